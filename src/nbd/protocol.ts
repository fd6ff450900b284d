// Notes on the design
// -------------------
// The NBD wire format (NetworkBlockDevice doc/proto.md): constants, incremental decoders for the
// two phases and encoders for everything the server sends. No sockets, no timers, no volumes:
// the server (server.ts) owns those. Everything here is pure, so unit and property tests can
// drive it byte by byte.
//
//
// This module is the one import path for all of it (importers use `import * as P from
// './protocol'`); the code lives in one module a concern, each with its own design note:
//   protocol-constants.ts  magics, sizes, flags, option/reply/command types, errno values
//   protocol-bytes.ts      ByteQueue (any split of the stream), u64 and string helpers
//   protocol-handshake.ts  HandshakeDecoder, option data parsers, handshake encoders
//   protocol-requests.ts   RequestDecoder (payload ownership, in-place receive), validateRequest
//   protocol-replies.ts    simple and structured reply encoders into a caller's buffer
//   protocol-client.ts     allocating encoders for what a client sends (tests, cold paths)
// Only ByteQueue, writeUInt64BE and truncatedUtf8 of protocol-bytes.ts are public here; its
// TWO_POW_32 and EMPTY stay between the protocol modules.

export * from './protocol-constants';
export { ByteQueue, truncatedUtf8, writeUInt64BE } from './protocol-bytes';
export * from './protocol-handshake';
export * from './protocol-requests';
export * from './protocol-replies';
export * from './protocol-client';
