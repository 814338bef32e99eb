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
  } else if (head_[0] != kNone || head_[1] != kNone) {
    // Every never-hashed block is in use: the least recently freed hashed block goes.
    const int32_t a = head_[0], st = head_[1];
    b = (st == kNone || (a != kNone && blocks_[Index(a)].seq < blocks_[Index(st)].seq)) ? a : st;
    if (b == st && state_alpha_ >= 0) {
      b = ChooseState();
      // Marconi evicts a state whole: its other free group blocks go too (they hold the same
      // state, useless alone), to the never-hashed side of the queue.
      const size_t e = static_cast<size_t>(blocks_[Index(b)].entry);
      std::vector<int32_t> siblings;
      for (size_t g = 0; g < groups_; ++g) {
        for (int32_t i = heads_[e * groups_ + g]; i != kNone; i = blocks_[Index(i)].dup_next) {
          if (i != b && blocks_[Index(i)].ref == 0) siblings.push_back(i);
        }
      }
      for (const int32_t i : siblings) Evict(i);
    }
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
  b.access = clock_;
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
    b.access = clock_;
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
  int32_t a = head_[0], st = head_[1];
  while (a != kNone || st != kNone) {
    const bool take_a =
        st == kNone || (a != kNone && blocks_[Index(a)].seq < blocks_[Index(st)].seq);
    int32_t& from = take_a ? a : st;
    out.push_back(from);
    from = blocks_[Index(from)].next;
  }
  return out;
}

int32_t VllmBlockPool::ChooseState() const {
  auto recency = [&](const Block& b) { return 1.0 / static_cast<double>(clock_ - b.access + 1); };
  double rmin = 0, rmax = 0, vmin = 0, vmax = 0;
  bool first = true;
  for (int32_t i = head_[1]; i != kNone; i = blocks_[Index(i)].next) {
    const Block& b = blocks_[Index(i)];
    const double r = recency(b);
    rmin = first ? r : std::min(rmin, r);
    rmax = first ? r : std::max(rmax, r);
    vmin = first ? b.value : std::min(vmin, b.value);
    vmax = first ? b.value : std::max(vmax, b.value);
    first = false;
  }
  auto norm = [](double x, double lo, double hi) { return hi > lo ? (x - lo) / (hi - lo) : 0.0; };
  int32_t best = kNone;
  double best_s = 0;
  for (int32_t i = head_[1]; i != kNone; i = blocks_[Index(i)].next) {
    const Block& b = blocks_[Index(i)];
    const double sc = norm(recency(b), rmin, rmax) + state_alpha_ * norm(b.value, vmin, vmax);
    if (best == kNone || sc < best_s ||
        (sc == best_s && (b.access < blocks_[Index(best)].access ||
                          (b.access == blocks_[Index(best)].access && i < best)))) {
      best = i;
      best_s = sc;
    }
  }
  return best;
}

void VllmBlockPool::Unlink(int32_t block) {
  Block& b = blocks_[Index(block)];
  const int l = ListOf(block);
  if (b.prev != kNone) {
    blocks_[Index(b.prev)].next = b.next;
  } else {
    head_[l] = b.next;
  }
  if (b.next != kNone) {
    blocks_[Index(b.next)].prev = b.prev;
  } else {
    tail_[l] = b.prev;
  }
  b.prev = b.next = kNone;
}

void VllmBlockPool::Append(int32_t block) {
  Block& b = blocks_[Index(block)];
  const int l = ListOf(block);
  b.seq = ++seq_;
  b.prev = tail_[l];
  b.next = kNone;
  if (tail_[l] != kNone) {
    blocks_[Index(tail_[l])].next = block;
  } else {
    head_[l] = block;
  }
  tail_[l] = block;
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
