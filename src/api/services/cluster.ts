/** etcd's Cluster service: membership, answered from the member's replicated registry. */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { plainOptions, type ServiceContext, unary } from '../context.js';
import { headerToPb, memberIdField, memberToPb, peerUrlsField } from '../convert.js';
import type {
  PbMemberAddRequest,
  PbMemberIdRequest,
  PbMemberListRequest,
  PbMemberUpdateRequest,
} from '../proto.js';

export function clusterService(ctx: ServiceContext): UntypedServiceImplementation {
  const { backend } = ctx;
  return {
    MemberAdd: unary(ctx, 'MemberAdd', async (pb: PbMemberAddRequest, call, signal) => {
      const urls = peerUrlsField(pb.peerURLs);
      const opts = plainOptions(ctx, call.metadata, signal);
      const added = await backend.memberAdd(urls, pb.isLearner, opts);
      return {
        header: headerToPb(backend.header()),
        member: memberToPb(added.member),
        members: added.members.map(memberToPb),
      };
    }),

    MemberRemove: unary(ctx, 'MemberRemove', async (pb: PbMemberIdRequest, call, signal) => {
      const id = memberIdField(pb.ID, 'MemberRemoveRequest.ID');
      const members = await backend.memberRemove(id, plainOptions(ctx, call.metadata, signal));
      return { header: headerToPb(backend.header()), members: members.map(memberToPb) };
    }),

    MemberUpdate: unary(ctx, 'MemberUpdate', async (pb: PbMemberUpdateRequest, call, signal) => {
      const id = memberIdField(pb.ID, 'MemberUpdateRequest.ID');
      const urls = peerUrlsField(pb.peerURLs);
      const opts = plainOptions(ctx, call.metadata, signal);
      const members = await backend.memberUpdate(id, urls, opts);
      return { header: headerToPb(backend.header()), members: members.map(memberToPb) };
    }),

    MemberList: unary(ctx, 'MemberList', async (pb: PbMemberListRequest, call, signal) => {
      const opts = plainOptions(ctx, call.metadata, signal);
      const members = await backend.memberList(pb.linearizable, opts);
      return { header: headerToPb(backend.header()), members: members.map(memberToPb) };
    }),

    MemberPromote: unary(ctx, 'MemberPromote', async (pb: PbMemberIdRequest, call, signal) => {
      const id = memberIdField(pb.ID, 'MemberPromoteRequest.ID');
      const members = await backend.memberPromote(id, plainOptions(ctx, call.metadata, signal));
      return { header: headerToPb(backend.header()), members: members.map(memberToPb) };
    }),
  };
}
