// Notes on the design
// -------------------
// The LINK_TEST payload of a mesh (mesh.ts): sender, receiver, a counter and padding derived
// from the counter, so the receiving side can tell a message that arrived intact, to the right
// controller, from one corrupted, misrouted or invented on the way. Decoding a payload that is
// not one throws ERR_LINK_BAD_MESSAGE (a LinkError); nothing here keeps state.

import { BinaryReader, BinaryWriter } from '../transport/codec';
import { LinkError } from '../transport/errors';

/** A LINK_TEST payload: sender, receiver, counter, then `paddingBytes` bytes derived from the counter. */
export function encodeMeshPayload(from: string, to: string, counter: number, paddingBytes: number): Buffer {
  const padding = Buffer.alloc(paddingBytes);
  for (let index = 0; index < paddingBytes; index++) padding[index] = (counter + index) & 0xff;
  return new BinaryWriter().string(from).string(to).u32(counter).u16(paddingBytes).raw(padding).encode();
}

/** Decodes a LINK_TEST payload; throws ERR_LINK_BAD_MESSAGE (a LinkError) when it is not one. */
export function decodeMeshPayload(payload: Buffer): { from: string; to: string; counter: number } {
  const reader = new BinaryReader(payload, 'mesh LINK_TEST');
  const from = reader.string(64);
  const to = reader.string(64);
  const counter = reader.u32();
  const paddingBytes = reader.u16();
  const padding = reader.raw(paddingBytes);
  reader.end();
  for (let index = 0; index < paddingBytes; index++) {
    if (padding[index] !== ((counter + index) & 0xff)) {
      throw new LinkError('ERR_LINK_BAD_MESSAGE', `mesh LINK_TEST ${from}->${to} #${counter}: padding byte ${index} is wrong`);
    }
  }
  return { from, to, counter };
}
