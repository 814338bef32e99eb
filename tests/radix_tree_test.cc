#include "cache/radix_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace marconi::internal {
namespace {

std::vector<Token> T(std::initializer_list<Token> t) { return t; }

TEST(RadixTree, AddSplitMergeRemoveKeepIdsAndDepths) {
  RadixTree tree;
  const NodeId a = tree.AddLeaf(RadixTree::kRoot, T({1, 2, 3, 4}));
  EXPECT_EQ(tree.node(a).depth, 4);
  EXPECT_EQ(tree.FindChild(RadixTree::kRoot, 1), a);
  EXPECT_EQ(tree.FindChild(RadixTree::kRoot, 2), kNoNode);

  const NodeId mid = tree.Split(a, 2);  // [1 2] -> [3 4]
  EXPECT_EQ(tree.node(mid).depth, 2);
  EXPECT_EQ(tree.node(mid).edge, T({1, 2}));
  EXPECT_EQ(tree.node(a).edge, T({3, 4}));
  EXPECT_EQ(tree.node(a).parent, mid);
  EXPECT_EQ(tree.node(a).depth, 4);
  EXPECT_EQ(tree.FindChild(RadixTree::kRoot, 1), mid);

  const NodeId b = tree.AddLeaf(mid, T({9}));
  EXPECT_EQ(tree.node(b).depth, 3);
  EXPECT_EQ(tree.node(mid).children.size(), 2u);
  EXPECT_EQ(tree.node(mid).children[0].first, 3);  // sorted by first token
  EXPECT_EQ(tree.size(), 3);

  tree.RemoveLeaf(b);
  EXPECT_EQ(tree.size(), 2);
  const NodeId merged = tree.MergeIntoChild(mid);
  EXPECT_EQ(merged, a);
  EXPECT_EQ(tree.node(a).edge, T({1, 2, 3, 4}));
  EXPECT_EQ(tree.node(a).parent, RadixTree::kRoot);
  EXPECT_EQ(tree.FindChild(RadixTree::kRoot, 1), a);
  EXPECT_EQ(tree.size(), 1);

  // Freed slots are reused.
  const NodeId c = tree.AddLeaf(RadixTree::kRoot, T({7}));
  EXPECT_TRUE(c == mid || c == b);
}

TEST(RadixTree, DirtyListHoldsEachChangedNodeOnce) {
  RadixTree tree;
  const NodeId a = tree.AddLeaf(RadixTree::kRoot, T({1, 2}));
  tree.MarkDirty(a);
  std::vector<NodeId> dirty = tree.TakeDirty();
  EXPECT_EQ(dirty.size(), 2u);  // the leaf and the root
  EXPECT_TRUE(tree.TakeDirty().empty());
  tree.MarkDirty(a);
  tree.MarkDirty(a);
  EXPECT_EQ(tree.TakeDirty(), std::vector<NodeId>{a});
}

}  // namespace
}  // namespace marconi::internal

namespace marconi::internal {
namespace {

TEST(CommonPrefix, MatchesElementLoopAroundChunkBoundaries) {
  std::vector<Token> a(300), b(300);
  for (size_t i = 0; i < a.size(); ++i) a[i] = b[i] = static_cast<Token>(i * 7);
  EXPECT_EQ(CommonPrefix(a.data(), b.data(), 300), 300);
  EXPECT_EQ(CommonPrefix(a.data(), b.data(), 0), 0);
  for (int64_t diff : {0, 1, 63, 64, 65, 127, 128, 200, 299}) {
    b[static_cast<size_t>(diff)] += 1;
    for (int64_t n : {diff, diff + 1, int64_t{300}}) {
      EXPECT_EQ(CommonPrefix(a.data(), b.data(), std::min<int64_t>(n, 300)),
                std::min<int64_t>(diff, n))
          << "diff " << diff << " n " << n;
    }
    b[static_cast<size_t>(diff)] -= 1;
  }
}

}  // namespace
}  // namespace marconi::internal
