/**
 * Member mode's messages cross the production wire codec (transport/message-codec.ts) on every
 * delivery, as they cross TCP between real members: the receiver gets a decoded copy whose byte
 * fields are views into a frame, never the sender's objects, and a field the codec dropped or
 * mangled would show as a safety or liveness failure. A MsgSnap goes as production streams it:
 * its header in a SNAP_BEGIN frame, the image rejoined after (the chunks carry raw bytes).
 */
import { type Message, MessageType } from '../raft/types.js';
import { FRAME_HEADER_BYTES } from '../transport/limits.js';
import {
  decodeMessages,
  decodeSnapBegin,
  encodeMessagesFrame,
  encodeSnapBeginFrame,
  withSnapshotData,
} from '../transport/message-codec.js';

export function throughTheWire(m: Message): Message {
  if (m.type === MessageType.Snap && m.snapshot !== null) {
    const data = m.snapshot.data;
    const frame = encodeSnapBeginFrame(0, data.length, m);
    const begin = decodeSnapBegin(frame.subarray(FRAME_HEADER_BYTES));
    return withSnapshotData(begin.message, data);
  }
  return decodeMessages(encodeMessagesFrame([m]).subarray(FRAME_HEADER_BYTES))[0]!;
}
