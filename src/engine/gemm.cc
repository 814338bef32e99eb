#include "engine/gemm.h"

#include <cblas.h>

namespace marconi::engine {

void Gemm(MatmulKernel kernel, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (kernel == MatmulKernel::kBlas) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a,
                static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
                static_cast<blasint>(ldc));
    return;
  }
  const int64_t b_row = trans_b ? ldb : 1, b_col = trans_b ? 1 : ldb;  // b(kk, j) strides
  for (int64_t i = 0; i < m; ++i) {
    const float* ai = a + i * lda;
    for (int64_t j = 0; j < n; ++j) {
      const float* bj = b + j * b_row;
      float acc = 0;
      for (int64_t kk = 0; kk < k; ++kk) acc += ai[kk] * bj[kk * b_col];
      float& out = c[i * ldc + j];
      out = beta == 0 ? acc : out + acc;
    }
  }
}

void SetBlasThreads(int threads) { openblas_set_num_threads(threads); }

}  // namespace marconi::engine
