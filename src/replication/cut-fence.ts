// Notes on the design
// -------------------
// A consistency group's fence on one pair's ordered stream (src/cgroup/, docs/cgroups.md). While
// a cycle's cut is taken (host write completions held), the pair is fenced at the cut's sequence
// `through`: records after it stay in the journal. The run (cutAt) arms the fence with the
// cycle; once everything through the fence is shipped, PAIR_CG_CUT goes out on the link, in order
// behind those records and before any later one, and the fence lifts, so the secondary takes its
// copy exactly at the cut. A fence lifted without a run (the cycle did not run), or dropped
// because the pair stopped mirroring or closed, rejects a pending cut.
//
// The pair (primary-pair.ts) owns one CutFence, checks whether a cut is possible (cutProblem),
// and asks it in its pump (or the journal group's stream asks through passFence) whether the
// stream may go on past the fence.

import type { Link } from '../transport/link';
import { MessageType } from '../transport/message-types';
import { type CutReply, decodeCutReply, encodeCutRequest } from '../cgroup/messages';
import { PairError } from './pair-state';
import type { PendingCut } from './primary-pair-options';

/** What a fence needs of its pair. */
export interface FencedStream {
  readonly name: string;
  readonly link: Link;
  /** The stream may ship again (a run arrived, or the fence lifted). */
  schedulePump(): void;
}

/** One pair's consistency-group fence. */
export class CutFence {
  private fence: { through: number; cut?: PendingCut } | undefined;

  constructor(private readonly stream: FencedStream) {}

  /** The sequence the stream is fenced at (undefined: none). */
  get through(): number | undefined {
    return this.fence?.through;
  }

  /** Fences the stream at `through` (the caller checked that a cut is possible). */
  set(through: number): void {
    this.fence = { through };
  }

  /** The run: resolves with the secondary's answer once the cut went out (see the note). */
  cutAt(options: { group: string; cycle: number; formed: number; timeoutMs: number }): Promise<CutReply> {
    const fence = this.fence;
    if (fence === undefined || fence.cut !== undefined) return Promise.reject(new PairError('ERR_PAIR_STATE', `pair ${this.stream.name} has no fence to cut at`));
    return new Promise<CutReply>((resolve, reject) => {
      fence.cut = { ...options, resolve, reject };
      this.stream.schedulePump();
    });
  }

  /**
   * The stream shipped everything through the fence: with a run, sends the cut, lifts the fence
   * and returns true (the stream goes on); without one yet, returns false (it waits).
   */
  release(): boolean {
    const fence = this.fence;
    if (fence === undefined) return true;
    const cut = fence.cut;
    if (cut === undefined) return false;
    this.fence = undefined;
    let reply: Promise<Buffer>;
    try {
      reply = this.stream.link.request(MessageType.PAIR_CG_CUT,
        encodeCutRequest({ name: this.stream.name, group: cut.group, cycle: cut.cycle, formed: cut.formed, through: fence.through }), { timeoutMs: cut.timeoutMs });
    } catch (error) {
      cut.reject(error as Error);
      return true;
    }
    reply.then((payload) => cut.resolve(decodeCutReply(payload)), (error: unknown) => cut.reject(error as Error));
    return true;
  }

  /** A crash: the fence is gone and a pending run is never settled (no host hears of it). */
  forget(): void {
    this.fence = undefined;
  }

  /** Lifts the fence without a cut; a pending run is rejected with `why`. True when there was one. */
  drop(why: string): boolean {
    const fence = this.fence;
    this.fence = undefined;
    fence?.cut?.reject(new PairError('ERR_PAIR_STATE', why));
    return fence !== undefined;
  }
}
