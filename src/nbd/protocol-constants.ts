// Notes on the design
// -------------------
// The NBD wire format's numbers (NetworkBlockDevice doc/proto.md): magics, header sizes, the
// handshake, transmission and command flags, option and reply types, the error values the spec
// allows on the wire, the block status flags and the metadata context names this server offers.
// Constants only (and commandName for readable logs): no state, no imports, so every other
// protocol module and the tests can take them without pulling in a codec.
//
// Invariant: each value is the one the spec (or, for blockmirror:dirty, qemu's dirty-bitmap
// contexts) gives; NBD_CMD_COUNT is one past the largest command, so per-type tables indexed by
// command type stay in step with COMMAND_NAMES.

/** 'NBDMAGIC' */
export const NBD_MAGIC_HIGH = 0x4e42444d;
export const NBD_MAGIC_LOW = 0x41474943;
/** 'IHAVEOPT' */
export const NBD_OPTS_MAGIC_HIGH = 0x49484156;
export const NBD_OPTS_MAGIC_LOW = 0x454f5054;
/** Option reply magic 0x0003e889045565a9. */
export const NBD_REP_MAGIC_HIGH = 0x0003e889;
export const NBD_REP_MAGIC_LOW = 0x045565a9;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const NBD_REQUEST_HEADER_BYTES = 28;
export const NBD_SIMPLE_REPLY_HEADER_BYTES = 16;
export const NBD_STRUCTURED_REPLY_HEADER_BYTES = 20;
export const NBD_OPTION_HEADER_BYTES = 16;
export const NBD_OPTION_REPLY_HEADER_BYTES = 20;
/** The spec's bound on every string (export names, descriptions, queries, messages). */
export const NBD_MAX_STRING_BYTES = 4096;

// Handshake flags (server -> client, 16 bits).
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
// Client flags (client -> server, 32 bits).
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags (16 bits).
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_PEEK_EXPORT = 4;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
export const NBD_OPT_EXTENDED_HEADERS = 11;

// Option reply types.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = 0x80000001;
export const NBD_REP_ERR_POLICY = 0x80000002;
export const NBD_REP_ERR_INVALID = 0x80000003;
export const NBD_REP_ERR_PLATFORM = 0x80000004;
export const NBD_REP_ERR_TLS_REQD = 0x80000005;
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
export const NBD_REP_ERR_SHUTDOWN = 0x80000007;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
export const NBD_REP_ERR_TOO_BIG = 0x80000009;

// NBD_REP_INFO types.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// Commands.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;
/** One past the largest command this server knows (for per-type tables). */
export const NBD_CMD_COUNT = 8;

// Command flags.
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// Structured reply flags and types.
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = 0x8001;
export const NBD_REPLY_TYPE_ERROR_OFFSET = 0x8002;

// Error values (the only ones the spec allows on the wire).
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// base:allocation flags.
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/**
 * blockmirror:dirty:<bitmap> flag: the extent overlaps a track whose bit is set in the bitmap
 * (it changed since the bitmap was cleared). Clean extents report 0. Same value qemu uses for
 * its qemu:dirty-bitmap contexts.
 */
export const BLOCKMIRROR_STATE_DIRTY = 1 << 0;

export const BASE_ALLOCATION_CONTEXT = 'base:allocation';
export const DIRTY_CONTEXT_PREFIX = 'blockmirror:dirty:';

const COMMAND_NAMES = ['read', 'write', 'disc', 'flush', 'trim', 'cache', 'write-zeroes', 'block-status'] as const;
export type NbdCommandName = (typeof COMMAND_NAMES)[number];

/** A readable name for a command type ('unknown' for types this server does not know). */
export function commandName(type: number): NbdCommandName | 'unknown' {
  return type >= 0 && type < NBD_CMD_COUNT ? (COMMAND_NAMES[type] as NbdCommandName) : 'unknown';
}
