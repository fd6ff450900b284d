// Notes on the design
// -------------------
// Diversion variant (b) of seed 004: a pre-provisioned work volume, filled append-only, takes the
// new writes of the main volumes of a weak group while its failing disk is spared, so the group's
// disks carry less load. Everything lives in one region (shared: it survives a SIGKILL):
//   header (4096)  magic "BMWORK01", slot size, slot count, terminal address (the last slot
//                  written, 1-based; 0 is the seed's NULL), state, main table (main volume ids,
//                  up to kMaxMains: one work volume serves several main volumes), counters;
//   slot bitmap    one bit per slot written since the last reset;
//   reverse table  per slot, the key (main index, block) it holds;
//   address map    open addressing (linear probing, capacity a power of two >= 2 x slots) from
//                  key to the newest slot holding it (0: not diverted); entries are never removed
//                  before a reset, so probing needs no tombstones;
//   slots          slotCount x slotBytes of data.
// Append order: the terminal is bumped first (the slot reserved), then the data, the reverse
// entry, the bitmap bit and the map entry. A SIGKILL in between wastes a slot at worst: the map
// still names the old slot (the write was not acknowledged) or already the new one, complete.
//
// The work volume sits behind a main volume's group store (GroupExtent in raid.hpp, step 4 of the
// write path), not in WriteInterceptor::route: the volume's own region must still take every
// write (it is the image snapshots preserve from), only the group's share is diverted, and reads
// must consult the map, which the interceptor seam (writes only) does not see.
//
// States: unused (writes pass to the main store), diverting, full (terminal = slot count: blocks
// already diverted are updated in their slot, others go to the main store again: the weak group
// carries them; status says 'full'), copying-back (copyBackStep writes each newest slot to its
// main store; a host write to a diverted block first copies that block back, then goes to the
// main store). When copy-back ends the tables are reset and the state is unused.
//
// Variant (c), a work disk: the same tables with the slots on an emulated Disk (create/open with
// a data disk: slot s is disk bytes [(s-1) x slotBytes, +slotBytes), the region holds the header
// and the tables only, and the header keeps the disk's id so open() refuses another disk). The
// mains are then a group's member disks (RaidGroup::setWorkDisk, raid.hpp) and a block is a
// member disk address / slotBytes. A slot I/O can fail on a disk: a failed slot write falls back
// to the main store with the whole merged block and forgets the slot (counted in slotErrors and
// fallbackWrites); a slot that cannot be read for a merge or a copy-back is rebuilt by the main
// store from redundancy (MainStore::rebuildMain: the group's other members), and a failed slot
// read in load() throws SlotIoError (the caller rebuilds the bytes, as for any unreadable disk).
//
// No allocation on the I/O path: one scratch slot is allocated at open. One thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "disk.hpp"
#include "region.hpp"

namespace bm {

// A disk I/O of a work disk's slot or of a main disk failed with this errno (RaidGroup catches it).
struct SlotIoError {
  int errnoValue;
};

// What a work volume writes through to and reads from for one main volume (the group's share).
class MainStore {
 public:
  virtual ~MainStore() = default;
  virtual void storeMain(uint64_t byteOffset, const uint8_t* data /* null: zeros */, uint64_t byteLength) = 0;
  virtual void loadMain(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) = 0;
  // The main's newest bytes rebuilt from redundancy (a group member: from the other members),
  // when the diversion's own copy cannot be read; false when there is none.
  virtual bool rebuildMain(uint64_t /*byteOffset*/, uint8_t* /*target*/, uint64_t /*byteLength*/) { return false; }
};

enum class WorkState : uint32_t { Unused = 0, Diverting = 1, Full = 2, CopyingBack = 3 };

struct WorkStats {
  uint64_t divertedWrites, fallbackWrites, inPlaceWrites, copiedBackSlots, divertedReads, slotErrors;
};

// One live row of the address map in arrival order: (main, block) -> slot.
struct WorkMapEntry {
  uint32_t main;
  uint64_t block;
  uint64_t slot;
};

class WorkVolume {
 public:
  static constexpr uint32_t kMaxMains = 8;
  static constexpr uint64_t kHeaderBytes = 4096;
  static constexpr uint64_t kMaxSlots = uint64_t(1) << 32;

  // dataOnDisk: the slots live on a data disk (variant (c)), not in the region.
  static uint64_t regionBytesFor(uint64_t slotCount, uint32_t slotBytes, bool dataOnDisk = false);
  // RangeError: slotBytes a power of two 512..65536, slotCount 1..kMaxSlots, region large enough;
  // with a data disk: slotCount x slotBytes within the disk, slotBytes a multiple of its sector.
  static std::shared_ptr<WorkVolume> create(std::shared_ptr<Region> region, uint64_t slotCount, uint32_t slotBytes,
                                            std::shared_ptr<Disk> dataDisk = nullptr);
  // ERR_DIVERSION_BAD_HEADER for a region that is not a work volume, or a data disk that is not
  // the one it was created with (or missing / given when the header says otherwise).
  static std::shared_ptr<WorkVolume> open(std::shared_ptr<Region> region, std::shared_ptr<Disk> dataDisk = nullptr);
  const std::shared_ptr<Disk>& dataDisk() const noexcept { return disk_; }
  // Live rows of the address map in arrival order (slot order), at most maxEntries.
  std::vector<WorkMapEntry> entries(uint64_t maxEntries) const;

  uint64_t slotCount() const noexcept { return slotCount_; }
  uint32_t slotBytes() const noexcept { return slotBytes_; }
  uint64_t capacityBytes() const noexcept { return slotCount_ * slotBytes_; }
  WorkState state() const noexcept;
  uint64_t terminal() const noexcept;
  std::vector<uint64_t> mains() const;
  bool slotWritten(uint64_t slot /* 1-based */) const;
  // The newest slot holding (main, block), 0 when the block is not diverted.
  uint64_t lookup(uint32_t main, uint64_t block) const noexcept;
  WorkStats stats() const noexcept;

  // The index of main volume `mainId` (registered on first use; ERR_DIVERSION_MAINS_FULL).
  uint32_t registerMain(uint64_t mainId);
  // unused -> diverting (ERR_DIVERSION_STATE otherwise).
  void start();
  // diverting/full -> copying-back (ERR_DIVERSION_STATE otherwise); copy-back starts at slot 1.
  void beginCopyBack();
  // Copies up to maxSlots slots back to their mains' attached stores (a main not attached: its
  // slot waits, ERR_DIVERSION_STATE). Returns the slots walked; at the end resets the
  // tables (state unused, terminal 0) and returns 0 when nothing was left.
  uint64_t copyBackStep(uint64_t maxSlots);
  // The store main `main` writes through (GroupExtent::setWorkVolume attaches, its destructor
  // detaches); copy-back writes each main's slots to its attached store.
  void attach(uint32_t main, MainStore* store) noexcept;
  void detach(MainStore* store) noexcept;
  uint64_t copyBackCursor() const noexcept;

  // The I/O seam (GroupExtent): a write or read of main `main` at [byteOffset, +byteLength).
  // appendNew false (a rebuild's write): blocks already diverted are updated in their slot, the
  // rest goes to the main store; no slot is taken.
  void store(uint32_t main, uint64_t byteOffset, const uint8_t* data, uint64_t byteLength, MainStore& inner,
             bool appendNew = true);
  void load(uint32_t main, uint64_t byteOffset, uint8_t* target, uint64_t byteLength, MainStore& inner);

 private:
  WorkVolume() = default;
  void layout();
  uint8_t* slotData(uint64_t slot) const noexcept { return data_ + (slot - 1) * slotBytes_; }
  // Slot I/O (region or data disk): false when the disk failed it.
  bool writeSlot(uint64_t slot, uint64_t within, const uint8_t* data /* null: zeros */, uint64_t n) noexcept;
  bool readSlot(uint64_t slot, uint64_t within, uint8_t* target, uint64_t n) noexcept;
  // The whole newest block of `slot` into scratch_: from the slot, else rebuilt by the main store
  // (SlotIoError when neither can).
  void loadNewest(uint64_t slot, uint64_t block, MainStore& inner);
  // A slot write failed: the merged block goes to the main store instead and the map forgets the slot.
  void fallBack(uint64_t* entry, uint64_t block, const uint8_t* merged, MainStore& inner);
  uint64_t* findEntry(uint64_t key) const noexcept;  // the key's entry or the empty one it would take
  // False when the slot write failed (the slot is wasted, nothing else changed). `entry` is the
  // key's map entry (findEntry: the caller found it already; nothing changed the map since).
  bool append(uint64_t key, uint64_t* entry, const uint8_t* block);
  void copyBlockBack(uint64_t slot, uint64_t key, uint64_t* entry, MainStore& inner);
  void reset() noexcept;

  std::shared_ptr<Region> region_;
  std::shared_ptr<Disk> disk_;
  uint8_t* header_ = nullptr;
  uint64_t* bitmap_ = nullptr;
  uint64_t* reverse_ = nullptr;
  uint64_t* map_ = nullptr;  // pairs: key, slot
  uint8_t* data_ = nullptr;
  uint64_t slotCount_ = 0;
  uint64_t mapCapacity_ = 0;
  uint32_t slotBytes_ = 0;
  std::vector<uint8_t> scratch_;
  MainStore* attached_[kMaxMains] = {};
};

}  // namespace bm
