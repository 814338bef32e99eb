// Helpers shared by the fuzzing harnesses: a violated property aborts with a message, so that
// libFuzzer records the input as a crash.
#ifndef MARCONI_FUZZ_FUZZ_UTIL_H_
#define MARCONI_FUZZ_FUZZ_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <string>

#include "marconi/status.h"

#define FUZZ_CHECK(cond, what)                                                         \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s: %s\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                         \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

namespace marconi::fuzz {

inline bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace marconi::fuzz

#endif  // MARCONI_FUZZ_FUZZ_UTIL_H_
