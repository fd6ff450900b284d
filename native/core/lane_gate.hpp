// Notes on the design
// -------------------
// The gate between a replicated volume's writers in this process: the event loop (its Volume
// object, native/binding/volume_wrap.cpp) and the native NBD lanes of its export
// (nbd_lane.cpp; docs/nbd-native.md, "Pair exports"). Every writer holds the gate's mutex across
// the store and the journal record, so the journal's order is the order of the stores whichever
// thread wrote (a secondary applying the records ends with the bytes the primary holds), and the
// journal's intent area keeps one writer at a time (journal.hpp).
//
// The open flag is the TypeScript side's word (src/replication/replicated-volume.ts): lanes
// write only while it is open (every pair of the volume async and mirroring, no consistency
// group's hold, the volume the write target). setOpen takes the mutex, so once setOpen(false)
// returns no lane write is in progress and none starts until the gate opens again: a transition
// on the event loop is ordered after every lane write that could see the old state. A lane that
// finds the gate closed hands its connection back to the event loop at that request, where the
// pair's own write path applies (generations, holds, ack points). The event loop's own writes
// never look at the flag.
#pragma once

#include <mutex>

namespace bm {

class LaneGate {
 public:
  std::mutex& mutex() noexcept { return mutex_; }
  // The caller holds mutex().
  bool openLocked() const noexcept { return open_; }
  void setOpen(bool open) {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = open;
  }
  // The caller holds mutex().
  void setOpenLocked(bool open) noexcept { open_ = open; }
  bool isOpen() {
    std::lock_guard<std::mutex> lock(mutex_);
    return open_;
  }

 private:
  std::mutex mutex_;
  bool open_ = false;
};

}  // namespace bm
