// Notes on the design
// -------------------
// A controller's pairs: it builds each declared pair's primary or secondary side, the replicated
// volume (journal) of each primary volume, and routes the pair protocol's messages from each link
// to the pair they name. Rules it enforces:
//   - A peer can only open a pair this controller declared, with this controller as the
//     secondary, for that peer, volumes and mode (else ERR_PAIR_UNKNOWN / ERR_PAIR_MISMATCH).
//   - A volume that is the secondary of a pair is exported read-only.
//   - A malformed pair message is a protocol error of the link (the connection drops; the pairs
//     on it suspend with link-down); a well-formed message the pair refuses is answered with
//     PAIR_ERROR and changes nothing.

import { EventEmitter } from 'node:events';

import type { Clock } from '../runtime/clock';
import type { Volume } from '../storage/volume';
import type { Link, LinkLogger, LinkMessage } from '../transport/link';
import { MessageType } from '../transport/message-types';
import {
  type PairMode,
  decodeName,
  decodePairError,
  decodePairOpen,
  decodePosition,
  decodeRecords,
  decodeResyncDone,
  decodeTrack,
  encodeOpenReply,
  encodePairError,
  encodeSequence,
} from './messages';
import { PairError, type PairRole } from './pair-state';
import { PrimaryPair, type PairStateEvent } from './primary-pair';
import { ReplicatedVolume, type ReplicatedVolumeOptions } from './replicated-volume';
import { SecondaryPair } from './secondary-pair';

/** A declared pair (the config's `pairs` entry). */
export interface PairSpec {
  name: string;
  /** This controller's volume. */
  volume: string;
  peer: string;
  /** The volume on the peer. */
  remoteVolume: string;
  mode: PairMode;
  role: PairRole;
  /** Sync only. @default 'never' */
  fence?: 'never' | 'data';
  /** @default true */
  autoResume?: boolean;
}

/** Options of a PairManager. */
export interface PairManagerOptions {
  controllerId: string;
  pairs: PairSpec[];
  volume: (name: string) => Volume | undefined;
  link: (peerId: string) => Link;
  /** Every link of the controller: each answers pair messages, even for pairs it has none of. */
  links: () => Iterable<Link>;
  clock: Clock;
  logger: LinkLogger;
  journal?: ReplicatedVolumeOptions;
}

/** The pairs of one controller. */
export class PairManager extends EventEmitter {
  private readonly primaries = new Map<string, PrimaryPair>();
  private readonly secondaries = new Map<string, SecondaryPair>();
  private readonly replicated = new Map<string, ReplicatedVolume>();
  private readonly secondaryVolumes = new Set<string>();

  constructor(private readonly options: PairManagerOptions) {
    super();
    const names = new Set<string>();
    for (const [index, spec] of options.pairs.entries()) {
      if (names.has(spec.name)) throw new TypeError(`pairs[${index}].name: duplicate pair ${spec.name}`);
      names.add(spec.name);
      if (options.volume(spec.volume) === undefined) throw new TypeError(`pairs[${index}].volume: no volume ${spec.volume}`);
      if (spec.role === 'secondary') {
        if (this.secondaryVolumes.has(spec.volume)) throw new TypeError(`pairs[${index}].volume: ${spec.volume} is the secondary of two pairs`);
        this.secondaryVolumes.add(spec.volume);
      }
    }
    for (const [index, spec] of options.pairs.entries()) {
      if (spec.role === 'primary' && this.secondaryVolumes.has(spec.volume)) {
        throw new TypeError(`pairs[${index}].volume: ${spec.volume} is a secondary; it cannot also be a primary`);
      }
    }
  }

  /** Builds every pair and starts the primaries. */
  start(): void {
    const { options } = this;
    const links = new Set<Link>();
    for (const spec of options.pairs) {
      const volume = options.volume(spec.volume) as Volume;
      const link = options.link(spec.peer);
      links.add(link);
      if (spec.role === 'primary') {
        let replicated = this.replicated.get(spec.volume);
        if (replicated === undefined) {
          replicated = new ReplicatedVolume(volume, options.clock, options.journal);
          this.replicated.set(spec.volume, replicated);
        }
        const pairOptions: ConstructorParameters<typeof PrimaryPair>[0] = {
          name: spec.name, volumeName: spec.volume, remoteVolume: spec.remoteVolume, mode: spec.mode,
        };
        if (spec.fence !== undefined) pairOptions.fence = spec.fence;
        if (spec.autoResume !== undefined) pairOptions.autoResume = spec.autoResume;
        const pair = new PrimaryPair(pairOptions, volume, replicated.journal, link, options.clock, options.logger);
        pair.on('state', (event: PairStateEvent) => this.emit('state', { ...event, role: 'primary' }));
        pair.on('stuck', (event: unknown) => this.emit('stuck', event));
        replicated.add(pair);
        this.primaries.set(spec.name, pair);
      } else {
        const pair = new SecondaryPair({ name: spec.name, volumeName: spec.volume, remoteVolume: spec.remoteVolume, mode: spec.mode },
          volume, link, options.clock, options.logger);
        pair.on('state', (event: PairStateEvent) => this.emit('state', { ...event, role: 'secondary' }));
        this.secondaries.set(spec.name, pair);
      }
    }
    for (const link of options.links()) links.add(link);
    for (const link of links) this.attach(link);
    for (const pair of this.primaries.values()) pair.start();
  }

  private secondaryFor(link: Link, name: string): SecondaryPair {
    const pair = this.secondaries.get(name);
    const spec = this.options.pairs.find((entry) => entry.name === name);
    if (pair === undefined || spec?.peer !== link.peerId) {
      throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.options.controllerId} declares no pair ${JSON.stringify(name)} ` +
        `as secondary of ${link.peerId}`);
    }
    return pair;
  }

  private primaryFor(link: Link, name: string): PrimaryPair | undefined {
    const pair = this.primaries.get(name);
    return pair !== undefined && this.options.pairs.find((entry) => entry.name === name)?.peer === link.peerId ? pair : undefined;
  }

  private attach(link: Link): void {
    const maxDataBytes = link.tuning.maxFrameBytes;
    link.handle(MessageType.PAIR_OPEN, (payload) => {
      const request = decodePairOpen(payload);
      return encodeOpenReply(this.secondaryFor(link, request.name).open(request));
    });
    link.handle(MessageType.PAIR_RESYNC_DONE, (payload) => {
      const done = decodeResyncDone(payload);
      this.secondaryFor(link, done.name).resyncDone(done.nextSequence);
      return Buffer.alloc(0);
    });
    link.handle(MessageType.PAIR_FLUSH, async (payload) => {
      const name = decodeName(payload, 'PAIR_FLUSH');
      return encodeSequence(await this.secondaryFor(link, name).flush());
    });
    link.on('message', (message: LinkMessage) => {
      switch (message.type) {
        case MessageType.PAIR_RECORDS: {
          const batch = decodeRecords(message.payload, maxDataBytes);
          this.withSecondary(link, batch.name, (pair) => pair.applyRecords(batch.records));
          return;
        }
        case MessageType.PAIR_TRACK: {
          const track = decodeTrack(message.payload, maxDataBytes);
          this.withSecondary(link, track.name, (pair) => pair.applyTrack(track.byteOffset, track.data));
          return;
        }
        case MessageType.PAIR_POSITION: {
          const position = decodePosition(message.payload);
          this.primaryFor(link, position.name)?.onPosition(position);
          return;
        }
        case MessageType.PAIR_ERROR: {
          const error = decodePairError(message.payload);
          this.primaryFor(link, error.name)?.onSecondaryError(error.code, error.message);
          return;
        }
        default:
      }
    });
  }

  private withSecondary(link: Link, name: string, apply: (pair: SecondaryPair) => void): void {
    let pair: SecondaryPair;
    try {
      pair = this.secondaryFor(link, name);
    } catch (error) {
      if (!(error instanceof PairError)) throw error;
      this.options.logger.warn({ peer: link.peerId, code: error.code }, error.message);
      try {
        link.send(MessageType.PAIR_ERROR, encodePairError(name, error.code, error.message));
      } catch {
        // The link is gone.
      }
      return;
    }
    apply(pair);
  }

  /** What the NBD server exports for `volumeName`: the replicated volume of a primary. */
  exportVolume(volumeName: string): ReplicatedVolume | undefined {
    return this.replicated.get(volumeName);
  }

  /** True when `volumeName` is the secondary of a pair (its export is read-only). */
  isSecondaryVolume(volumeName: string): boolean {
    return this.secondaryVolumes.has(volumeName);
  }

  /** The primary side of `name`; throws ERR_PAIR_UNKNOWN. */
  primary(name: string): PrimaryPair {
    const pair = this.primaries.get(name);
    if (pair === undefined) throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.options.controllerId} is not the primary of a pair ${JSON.stringify(name)}`);
    return pair;
  }

  /** The secondary side of `name`, if this controller holds it. */
  secondary(name: string): SecondaryPair | undefined {
    return this.secondaries.get(name);
  }

  status(): Record<string, unknown>[] {
    return [...this.primaries.values(), ...this.secondaries.values()].map((pair) => pair.status());
  }

  /** Stops every pair and closes the journals. */
  async close(): Promise<void> {
    for (const pair of this.secondaries.values()) pair.close();
    for (const replicated of this.replicated.values()) await replicated.close();
  }
}
