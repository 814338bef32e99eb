// Must not compile with -Werror: Status and Result are [[nodiscard]], so a dropped one is an error
// (tests/compile_fail/check_fails.cmake). IGNORE picks which of the two is dropped.
#include "marconi/status.h"

namespace {

marconi::Status MayFail() { return marconi::Status::InvalidArgument("x"); }
marconi::Result<int> MayFailWithValue() { return marconi::Status::InvalidArgument("x"); }

}  // namespace

int main() {
#if IGNORE == 1
  MayFail();
#elif IGNORE == 2
  MayFailWithValue();
#else
  // The control: the same calls, used, compile.
  return MayFail().ok() && MayFailWithValue().ok() ? 0 : 1;
#endif
}
