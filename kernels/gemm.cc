// cuBLASLt GEMM with a per-shape plan cache.
//
// Row-major out[m, n] = x[m, k] w[n, k]^T is, read column-major, out^T[n, m] = w x^T: cuBLASLt
// gets A = w (k x n column-major, transposed), B = x (k x m column-major), C = out^T (n x m).
// The bias epilogue adds a vector along the n (row) dimension of that column-major result.
#include "ite/kernels/gemm.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <map>
#include <tuple>

#include "cuda_check.h"

namespace ite::kernels {
namespace {

Status LtStatus(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Internal("{}: cuBLASLt status {}", what, static_cast<int>(st));
}

#define ITE_LT_RETURN_IF_ERROR(expr) ITE_RETURN_IF_ERROR(LtStatus((expr), #expr))

using PlanKey = std::tuple<int, bool, bool, int32_t, int32_t, int32_t>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

}  // namespace

struct GemmRunner::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<PlanKey, std::unique_ptr<Plan>> plans;

  ~Impl() {
    plans.clear();
    if (workspace) cudaFree(workspace);
    if (handle) cublasLtDestroy(handle);
  }

  StatusOr<Plan*> GetPlan(const GemmArgs& g) {
    const PlanKey key{static_cast<int>(g.dtype), g.out_f32, g.bias != nullptr, g.m, g.n, g.k};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second.get();
    auto plan = std::make_unique<Plan>();
    const cudaDataType_t in = g.dtype == DType::kF16 ? CUDA_R_16F : CUDA_R_16BF;
    const cudaDataType_t out = g.out_f32 ? CUDA_R_32F : in;
    ITE_LT_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    ITE_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                          &trans_a, sizeof(trans_a)));
    ITE_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                          &trans_b, sizeof(trans_b)));
    if (g.bias) {
      const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      ITE_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
          plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    }
    ITE_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, in, g.k, g.n, g.k));
    ITE_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, in, g.k, g.m, g.k));
    ITE_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->c, out, g.n, g.m, g.n));

    cublasLtMatmulPreference_t pref = nullptr;
    ITE_LT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof(workspace_bytes));
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->c, plan->c,
                                          pref, 1, &result, &found);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    ITE_RETURN_IF_ERROR(LtStatus(st, "cublasLtMatmulAlgoGetHeuristic"));
    if (found == 0) {
      return Internal("GEMM: cuBLASLt has no algorithm for {} m={} n={} k={} out_f32={}",
                      DTypeName(g.dtype), g.m, g.n, g.k, g.out_f32);
    }
    plan->algo = result.algo;
    Plan* raw = plan.get();
    plans.emplace(key, std::move(plan));
    return raw;
  }
};

GemmRunner::GemmRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GemmRunner::~GemmRunner() = default;

StatusOr<std::unique_ptr<GemmRunner>> GemmRunner::Create(size_t workspace_bytes) {
  auto impl = std::make_unique<Impl>();
  ITE_LT_RETURN_IF_ERROR(cublasLtCreate(&impl->handle));
  if (workspace_bytes > 0) {
    ITE_CUDA_RETURN_IF_ERROR(cudaMalloc(&impl->workspace, workspace_bytes));
  }
  impl->workspace_bytes = workspace_bytes;
  return std::unique_ptr<GemmRunner>(new GemmRunner(std::move(impl)));
}

size_t GemmRunner::cached_plans() const { return impl_->plans.size(); }

Status GemmRunner::Run(const GemmArgs& g, cudaStream_t stream) {
  if (g.x == nullptr || g.w == nullptr || g.out == nullptr) {
    return InvalidArgument("GEMM: x, w and out must be non-null");
  }
  if (g.m < 0 || g.n <= 0 || g.k <= 0) {
    return InvalidArgument("GEMM: bad shape m={} n={} k={}", g.m, g.n, g.k);
  }
  if (g.bias && g.out_f32)
    return InvalidArgument("GEMM: bias is only supported with out_f32=false");
  if (g.m == 0) return Status::Ok();
  ITE_ASSIGN_OR_RETURN(Plan * plan, impl_->GetPlan(g));
  if (g.bias) {
    ITE_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  }
  const float alpha = 1.0f, beta = 0.0f;
  ITE_LT_RETURN_IF_ERROR(cublasLtMatmul(impl_->handle, plan->desc, &alpha, g.w, plan->a, g.x,
                                        plan->b, &beta, g.out, plan->c, g.out, plan->c, &plan->algo,
                                        impl_->workspace, impl_->workspace_bytes, stream));
  return Status::Ok();
}

}  // namespace ite::kernels
