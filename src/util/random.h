// Draws by inversion from a 64-bit Mersenne twister: unlike the standard distributions, they give
// the same numbers on every standard library, so traces and weights are reproducible anywhere.
#ifndef MARCONI_UTIL_RANDOM_H_
#define MARCONI_UTIL_RANDOM_H_

#include <cmath>
#include <random>

namespace marconi::internal {

// Uniform in [0, 1), from the top 53 bits of one draw.
inline double UnitInterval(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// Exponential with the given mean.
inline double Exponential(std::mt19937_64& rng, double mean) {
  return -mean * std::log(1.0 - UnitInterval(rng));
}

}  // namespace marconi::internal

#endif  // MARCONI_UTIL_RANDOM_H_
