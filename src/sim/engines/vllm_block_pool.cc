#include "sim/engines/vllm_block_pool.h"

#include <algorithm>
#include <limits>

namespace marconi::sim {

int32_t& BlockKeyMap::FindOrInsert(uint64_t key, int32_t value) {
  key = Norm(key);
  if (4 * (size_ + 1) > keys_.size()) Grow();
  size_t i = Home(key);
  for (; keys_[i] != kEmpty; i = (i + 1) & mask_) {
    if (keys_[i] == key) return values_[i];
  }
  keys_[i] = key;
  values_[i] = value;
  ++size_;
  return values_[i];
}

void BlockKeyMap::EraseAt(size_t i) {
  // Backward shift: move later entries of the probe run into the hole when their home slot
  // does not lie (cyclically) between the hole and them.
  for (size_t j = (i + 1) & mask_; keys_[j] != kEmpty; j = (j + 1) & mask_) {
    const size_t home = Home(keys_[j]);
    if (((j - home) & mask_) >= ((j - i) & mask_)) {
      keys_[i] = keys_[j];
      values_[i] = values_[j];
      i = j;
    }
  }
  keys_[i] = kEmpty;
  values_[i] = kNone;
  --size_;
}

void BlockKeyMap::Grow() {
  std::vector<uint64_t> keys(keys_.size() * 2, kEmpty);
  std::vector<int32_t> values(keys.size(), kNone);
  keys.swap(keys_);
  values.swap(values_);
  mask_ = keys_.size() - 1;
  --shift_;
  size_ = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] != kEmpty) FindOrInsert(keys[i], values[i]);
  }
}

VllmBlockPool::VllmBlockPool(int64_t usable_blocks, int64_t groups)
    : usable_(usable_blocks),
      never_used_(usable_blocks),
      groups_(static_cast<size_t>(std::max<int64_t>(groups, 1))) {}

int32_t VllmBlockPool::Allocate() {
  int32_t b = kNone;
  if (!unhashed_free_.empty()) {
    b = unhashed_free_.back();
    unhashed_free_.pop_back();
  } else if (never_used_ > 0 &&
             blocks_.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    --never_used_;
    b = static_cast<int32_t>(blocks_.size());
    blocks_.emplace_back();
  } else if (head_ != kNone) {
    // Every never-hashed block is in use: the least recently freed hashed block goes.
    b = head_;
    Unlink(b);
    --hashed_free_;
    ++evicted_[static_cast<int>(blocks_[Index(b)].kind)];
    Uncache(b);
  } else {
    return kNone;
  }
  blocks_[Index(b)].ref = 1;
  return b;
}

void VllmBlockPool::Touch(int32_t block) {
  Block& b = blocks_[Index(block)];
  if (b.ref == 0) {  // a cached block waiting in the free queue
    Unlink(block);
    --hashed_free_;
  }
  ++b.ref;
}

void VllmBlockPool::Cache(std::span<const int32_t> blocks, uint64_t key, Kind kind) {
  int32_t e = map_.Find(key);
  if (e == kNone) {
    if (!free_entries_.empty()) {
      e = free_entries_.back();
      free_entries_.pop_back();
    } else {
      e = static_cast<int32_t>(entry_key_.size());
      entry_key_.push_back(0);
      entry_blocks_.push_back(0);
      heads_.resize(heads_.size() + groups_, kNone);
    }
    entry_key_[static_cast<size_t>(e)] = key;
    map_.FindOrInsert(key, e);
  }
  const size_t base = static_cast<size_t>(e) * groups_;
  for (size_t g = 0; g < blocks.size(); ++g) {
    const int32_t block = blocks[g];
    Block& b = blocks_[Index(block)];
    b.kind = kind;
    b.entry = e;
    b.group = static_cast<int32_t>(g);
    b.dup_next = kNone;
    ++hashed_[static_cast<int>(kind)];
    ++entry_blocks_[static_cast<size_t>(e)];
    if (heads_[base + g] == kNone) {
      heads_[base + g] = block;
    } else {  // a duplicate: after the others, so lookups keep returning the oldest
      int32_t last = heads_[base + g];
      while (blocks_[Index(last)].dup_next != kNone) last = blocks_[Index(last)].dup_next;
      blocks_[Index(last)].dup_next = block;
    }
  }
}

void VllmBlockPool::Free(int32_t block) {
  Block& b = blocks_[Index(block)];
  if (--b.ref > 0) return;
  if (b.kind == Kind::kUnhashed) {
    unhashed_free_.push_back(block);
  } else {
    Append(block);
    ++hashed_free_;
  }
}

bool VllmBlockPool::Evict(int32_t block) {
  Block& b = blocks_[Index(block)];
  if (b.ref > 0 || b.kind == Kind::kUnhashed) return false;
  Unlink(block);
  --hashed_free_;
  ++evicted_[static_cast<int>(b.kind)];
  Uncache(block);
  unhashed_free_.push_back(block);
  return true;
}

std::vector<int32_t> VllmBlockPool::HashedFreeOrder() const {
  std::vector<int32_t> out;
  for (int32_t b = head_; b != kNone; b = blocks_[Index(b)].next) out.push_back(b);
  return out;
}

void VllmBlockPool::Unlink(int32_t block) {
  Block& b = blocks_[Index(block)];
  if (b.prev != kNone) {
    blocks_[Index(b.prev)].next = b.next;
  } else {
    head_ = b.next;
  }
  if (b.next != kNone) {
    blocks_[Index(b.next)].prev = b.prev;
  } else {
    tail_ = b.prev;
  }
  b.prev = b.next = kNone;
}

void VllmBlockPool::Append(int32_t block) {
  Block& b = blocks_[Index(block)];
  b.prev = tail_;
  b.next = kNone;
  if (tail_ != kNone) {
    blocks_[Index(tail_)].next = block;
  } else {
    head_ = block;
  }
  tail_ = block;
}

void VllmBlockPool::Uncache(int32_t block) {
  Block& b = blocks_[Index(block)];
  const size_t e = static_cast<size_t>(b.entry);
  int32_t& head = heads_[e * groups_ + static_cast<size_t>(b.group)];
  if (head == block) {
    head = b.dup_next;
  } else {
    int32_t prev = head;
    while (blocks_[Index(prev)].dup_next != block) prev = blocks_[Index(prev)].dup_next;
    blocks_[Index(prev)].dup_next = b.dup_next;
  }
  if (--entry_blocks_[e] == 0) {  // the key's last block: the key leaves the map
    map_.EraseAt(map_.SlotOf(entry_key_[e]));
    free_entries_.push_back(b.entry);
  }
  --hashed_[static_cast<int>(b.kind)];
  b.kind = Kind::kUnhashed;
  b.entry = kNone;
  b.dup_next = kNone;
}

}  // namespace marconi::sim
