// Matrix products for the reference hybrid model, in two kernels:
//   kReference: plain loops; every output element is one dot product accumulated in ascending k,
//     so a row's result never depends on how many rows are computed together (a resume from any
//     position repeats the full run's arithmetic exactly).
//   kBlas: OpenBLAS sgemm; fast, but its blocking depends on the matrix sizes, so the same row
//     may round differently in calls of different shapes. The model issues its products on row
//     blocks aligned to absolute chunk boundaries, so that a prefill resumed on a chunk boundary
//     makes exactly the calls of the full run (bit-identical); elsewhere results agree to float
//     rounding.
#ifndef MARCONI_ENGINE_GEMM_H_
#define MARCONI_ENGINE_GEMM_H_

#include <cstdint>

namespace marconi::engine {

enum class MatmulKernel { kReference, kBlas };

// C = A op(B) + beta C with row-major strided matrices: A is [m][k] (leading dimension lda);
// op(B) is B^T with B [n][k] when trans_b, else B [k][n]; C is [m][n]. beta is 0 or 1 (with 0, C
// is overwritten and may hold garbage). Preconditions: m, n, k > 0; no aliasing of C with A or B.
void Gemm(MatmulKernel kernel, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Threads OpenBLAS may use in every later product, process-wide (OpenBLAS has no per-call
// setting). The model's products are at most chunk_size rows: splitting them across threads
// costs more than it gains (2.6x slower prefill with 2 threads on a 2-core machine), so the
// command line sets 1 unless OPENBLAS_NUM_THREADS is given. Not thread-safe.
void SetBlasThreads(int threads);

}  // namespace marconi::engine

#endif  // MARCONI_ENGINE_GEMM_H_
