// Must not compile: a RequestHandle is read-only to everyone but PrefixCache (an engine that
// edited one could make the cache account for states nobody holds), and move-only (two copies
// would release one pin twice). tests/CMakeLists.txt compiles it with each EDIT.
#include <utility>

#include "marconi/prefix_cache.h"

int main() {
  marconi::RequestHandle h;
#if EDIT == 1
  h.lookup_.reusable_tokens = 5;  // a private field
#elif EDIT == 2
  h.lookup().reusable_tokens = 5;  // through the accessor: const
#elif EDIT == 3
  h.prefill_checkpoints().push_back(3);
#elif EDIT == 4
  marconi::RequestHandle copy = h;  // copying
  (void)copy;
#else
  // The control: reading and moving compile.
  marconi::RequestHandle moved = std::move(h);
  return static_cast<int>(moved.lookup().reusable_tokens + moved.input_tokens() +
                          static_cast<int64_t>(moved.prefill_checkpoints().size()) +
                          (moved.holds_lease() ? 1 : 0));
#endif
  return 0;
}
