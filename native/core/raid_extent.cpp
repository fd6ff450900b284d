// Notes on the design
// -------------------
// GroupExtent (raid.hpp): the BackingStore of a volume laid on a group, step 4 of the write path.
// A store failure is kept and thrown by finishBatch, after the batch's bitmaps and journal saw
// it; a work volume (variant (b)) or a backup volume (variant (a)) set on it takes its stores and
// loads first, with the extent itself as their main store (storeMain/loadMain: the group).
#include <string>

#include "errors.hpp"
#include "raid.hpp"

namespace bm {

GroupExtent::GroupExtent(std::shared_ptr<RaidGroup> group, uint64_t groupByteOffset, uint64_t byteLength)
    : group_(std::move(group)), groupByteOffset_(groupByteOffset), byteLength_(byteLength) {
  BM_ASSERT(group_ != nullptr);
  if (groupByteOffset > group_->capacityBytes() || byteLength > group_->capacityBytes() - groupByteOffset) {
    throw RangeError("the extent is outside the group");
  }
  failedMessage_.reserve(256);
}

void GroupExtent::store(uint64_t byteOffset, const uint8_t* data, uint64_t byteLength) {
  BM_ASSERT(byteOffset <= byteLength_ && byteLength <= byteLength_ - byteOffset);
  try {
    if (backup_) backup_->store(byteOffset, data, byteLength, *this);
    else if (work_) work_->store(main_, byteOffset, data, byteLength, *this);
    else group_->write(groupByteOffset_ + byteOffset, data, byteLength);
  } catch (const Error& error) {
    // Kept until the batch's bitmaps and journal are done (the volume's own store has the bytes).
    if (!failed_) {
      failed_ = true;
      failedCode_ = error.code();
      failedMessage_ = error.what();
    }
  }
}

void GroupExtent::load(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) {
  BM_ASSERT(byteOffset <= byteLength_ && byteLength <= byteLength_ - byteOffset);
  if (backup_) backup_->load(byteOffset, target, byteLength, *this);
  else if (work_) work_->load(main_, byteOffset, target, byteLength, *this);
  else group_->read(groupByteOffset_ + byteOffset, target, byteLength);
}

GroupExtent::~GroupExtent() {
  if (work_) work_->detach(this);
  if (backup_) backup_->detach(this);
}

void GroupExtent::setBackup(std::shared_ptr<BackupVolume> backup) {
  if (backup && backup_ && backup_ != backup && backup_->state() != WorkState::Unused) {
    throw Error(Code::ERR_DIVERSION_STATE, "the volume is backed up to another backup volume in use (copy it back and lift it first)");
  }
  if (backup_) backup_->detach(this);
  backup_ = std::move(backup);
  if (backup_) backup_->attach(this);
}

void GroupExtent::setWorkVolume(std::shared_ptr<WorkVolume> work, uint32_t main) noexcept {
  if (work_) work_->detach(this);
  work_ = std::move(work);
  main_ = main;
  if (work_) work_->attach(main, this);
}

void GroupExtent::storeMain(uint64_t byteOffset, const uint8_t* data, uint64_t byteLength) {
  BM_ASSERT(byteOffset <= byteLength_ && byteLength <= byteLength_ - byteOffset);
  group_->write(groupByteOffset_ + byteOffset, data, byteLength);
}

void GroupExtent::loadMain(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) {
  BM_ASSERT(byteOffset <= byteLength_ && byteLength <= byteLength_ - byteOffset);
  group_->read(groupByteOffset_ + byteOffset, target, byteLength);
}

void GroupExtent::finishBatch() {
  if (!failed_) return;
  failed_ = false;
  throw Error(failedCode_, failedMessage_);
}

}  // namespace bm
