/** etcd's Cluster service: membership, answered from the member's replicated registry. */
import {
  plainOptions,
  type ServiceContext,
  unary,
  withAdminCheck,
  withLeaderCheck,
} from '../context.js';

/** What etcd 3.4 reserves for root (checkMembershipOperationPermission). */
const ADMIN_METHODS = ['MemberAdd', 'MemberRemove', 'MemberUpdate', 'MemberPromote'];

import { headerToPb, memberIdField, memberToPb, peerUrlsField } from '../convert.js';
import type { ServiceHandlers } from '../grpc/handlers.js';
import type {
  PbMemberAddRequest,
  PbMemberIdRequest,
  PbMemberListRequest,
  PbMemberUpdateRequest,
} from '../proto.js';

export function clusterService(ctx: ServiceContext): ServiceHandlers {
  const { backend } = ctx;
  // etcd's Cluster service fills no revision in its headers (cluster_id, member_id, raft_term).
  const clusterHeader = () => headerToPb(backend.header(), 0);
  const handlers = withLeaderCheck(ctx, {
    MemberAdd: unary(async (pb: PbMemberAddRequest, call) => {
      const urls = peerUrlsField(pb.peerURLs);
      const opts = plainOptions(ctx, call);
      const added = await backend.memberAdd(urls, pb.isLearner, opts);
      return {
        header: clusterHeader(),
        member: memberToPb(added.member),
        members: added.members.map(memberToPb),
      };
    }),

    MemberRemove: unary(async (pb: PbMemberIdRequest, call) => {
      const id = memberIdField(pb.ID, 'MemberRemoveRequest.ID');
      const members = await backend.memberRemove(id, plainOptions(ctx, call));
      return { header: clusterHeader(), members: members.map(memberToPb) };
    }),

    MemberUpdate: unary(async (pb: PbMemberUpdateRequest, call) => {
      const id = memberIdField(pb.ID, 'MemberUpdateRequest.ID');
      const urls = peerUrlsField(pb.peerURLs);
      const opts = plainOptions(ctx, call);
      const members = await backend.memberUpdate(id, urls, opts);
      return { header: clusterHeader(), members: members.map(memberToPb) };
    }),

    MemberList: unary(async (pb: PbMemberListRequest, call) => {
      const opts = plainOptions(ctx, call);
      const members = await backend.memberList(pb.linearizable, opts);
      return { header: clusterHeader(), members: members.map(memberToPb) };
    }),

    MemberPromote: unary(async (pb: PbMemberIdRequest, call) => {
      const id = memberIdField(pb.ID, 'MemberPromoteRequest.ID');
      const members = await backend.memberPromote(id, plainOptions(ctx, call));
      return { header: clusterHeader(), members: members.map(memberToPb) };
    }),
  });
  return withAdminCheck(ctx, handlers, ADMIN_METHODS);
}
