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
#include "gemv.h"

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

// The rows the batch-invariant algorithm of a weight shape is chosen for: a middle size, so that
// decode batches and prefill chunks both stay reasonable.
constexpr int32_t kInvariantPlanRows = 128;

struct GemmRunner::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  bool batch_invariant = false;
  std::map<PlanKey, std::unique_ptr<Plan>> plans;
  // Batch-invariant mode: the one algorithm of each (dtype, out_f32, bias, n, k); m is 0.
  std::map<PlanKey, cublasLtMatmulAlgo_t> invariant_algos;

  ~Impl() {
    plans.clear();
    if (workspace) cudaFree(workspace);
    if (handle) cublasLtDestroy(handle);
  }

  // The descriptors of one shape; the algorithm is chosen apart.
  static Status Describe(const GemmArgs& g, Plan* plan) {
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
    return Status::Ok();
  }

  // The heuristic's first algorithm for the plan's shape; with `whole_k`, only algorithms that
  // do not split k (no reduction of partial sums).
  StatusOr<cublasLtMatmulAlgo_t> Choose(const GemmArgs& g, const Plan& plan, bool whole_k) {
    cublasLtMatmulPreference_t pref = nullptr;
    ITE_LT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const uint32_t no_reduction = CUBLASLT_REDUCTION_SCHEME_NONE;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof(workspace_bytes));
    if (st == CUBLAS_STATUS_SUCCESS && whole_k) {
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                &no_reduction, sizeof(no_reduction));
    }
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref,
                                          1, &result, &found);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    ITE_RETURN_IF_ERROR(LtStatus(st, "cublasLtMatmulAlgoGetHeuristic"));
    if (found == 0) {
      return Internal("GEMM: cuBLASLt has no algorithm for {} m={} n={} k={} out_f32={}",
                      DTypeName(g.dtype), g.m, g.n, g.k, g.out_f32);
    }
    cublasLtMatmulAlgo_t algo = result.algo;
    if (whole_k) {
      const int32_t one = 1;
      ITE_LT_RETURN_IF_ERROR(cublasLtMatmulAlgoConfigSetAttribute(
          &algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one, sizeof(one)));
    }
    return algo;
  }

  // The algorithm of a weight shape in batch-invariant mode, checked to take this m.
  StatusOr<cublasLtMatmulAlgo_t> InvariantAlgo(const GemmArgs& g, const Plan& plan) {
    const PlanKey shape{static_cast<int>(g.dtype), g.out_f32, g.bias != nullptr, 0, g.n, g.k};
    auto it = invariant_algos.find(shape);
    if (it == invariant_algos.end()) {
      GemmArgs rep = g;
      rep.m = kInvariantPlanRows;
      Plan rep_plan;
      ITE_RETURN_IF_ERROR(Describe(rep, &rep_plan));
      ITE_ASSIGN_OR_RETURN(cublasLtMatmulAlgo_t algo, Choose(rep, rep_plan, /*whole_k=*/true));
      it = invariant_algos.emplace(shape, algo).first;
    }
    cublasLtMatmulAlgo_t algo = it->second;
    cublasLtMatmulHeuristicResult_t check{};
    const cublasStatus_t st =
        cublasLtMatmulAlgoCheck(handle, plan.desc, plan.a, plan.b, plan.c, plan.c, &algo, &check);
    if (st != CUBLAS_STATUS_SUCCESS || check.workspaceSize > workspace_bytes) {
      return FailedPrecondition(
          "GEMM: the batch-invariant algorithm of n={} k={} does not take m={} (cuBLASLt "
          "status {}, workspace {} of {} bytes)",
          g.n, g.k, g.m, static_cast<int>(st), check.workspaceSize, workspace_bytes);
    }
    return algo;
  }

  StatusOr<Plan*> GetPlan(const GemmArgs& g) {
    const PlanKey key{static_cast<int>(g.dtype), g.out_f32, g.bias != nullptr, g.m, g.n, g.k};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second.get();
    auto plan = std::make_unique<Plan>();
    ITE_RETURN_IF_ERROR(Describe(g, plan.get()));
    if (batch_invariant) {
      ITE_ASSIGN_OR_RETURN(plan->algo, InvariantAlgo(g, *plan));
    } else {
      ITE_ASSIGN_OR_RETURN(plan->algo, Choose(g, *plan, /*whole_k=*/false));
    }
    Plan* raw = plan.get();
    plans.emplace(key, std::move(plan));
    return raw;
  }
};

GemmRunner::GemmRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GemmRunner::~GemmRunner() = default;

StatusOr<std::unique_ptr<GemmRunner>> GemmRunner::Create(size_t workspace_bytes,
                                                         bool batch_invariant) {
  auto impl = std::make_unique<Impl>();
  impl->batch_invariant = batch_invariant;
  ITE_LT_RETURN_IF_ERROR(cublasLtCreate(&impl->handle));
  if (workspace_bytes > 0) {
    ITE_CUDA_RETURN_IF_ERROR(cudaMalloc(&impl->workspace, workspace_bytes));
  }
  impl->workspace_bytes = workspace_bytes;
  return std::unique_ptr<GemmRunner>(new GemmRunner(std::move(impl)));
}

size_t GemmRunner::cached_plans() const { return impl_->plans.size(); }

bool GemmRunner::Fuses(const GemmArgs& g) const {
  return !impl_->batch_invariant && internal::GemvApplies(g);
}

Status GemmRunner::Run(const GemmArgs& g, cudaStream_t stream) {
  if (g.x == nullptr || g.w == nullptr || g.out == nullptr) {
    return InvalidArgument("GEMM: x, w and out must be non-null");
  }
  if (g.m < 0 || g.n <= 0 || g.k <= 0) {
    return InvalidArgument("GEMM: bad shape m={} n={} k={}", g.m, g.n, g.k);
  }
  if (g.bias && g.out_f32)
    return InvalidArgument("GEMM: bias is only supported with out_f32=false");
  if (g.out_f32 && g.epilogue != GemmEpilogue::kStore)
    return InvalidArgument("GEMM: an fp32 output only stores");
  if (g.m == 0) return Status::Ok();
  // A few rows read the weight once: the weight-streaming kernel beats cuBLASLt's tiles there.
  // Not in batch-invariant mode, whose rows must round alike at every m.
  if (Fuses(g)) return internal::Gemv(g, stream);
  if (g.rms_norm_x || (g.epilogue != GemmEpilogue::kStore && g.epilogue != GemmEpilogue::kAccumulate))
    return InvalidArgument(
        "GEMM: normalised x, silu * mul and RoPE epilogues are fused only into products of 1-{} "
        "rows outside batch-invariant mode (m={})",
        kGemvMaxRows, g.m);
  ITE_ASSIGN_OR_RETURN(Plan * plan, impl_->GetPlan(g));
  if (g.bias) {
    ITE_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  }
  // kAccumulate: out = x w^T + 1 * out, read and written in place (C and D share a layout).
  const float alpha = 1.0f, beta = g.epilogue == GemmEpilogue::kAccumulate ? 1.0f : 0.0f;
  ITE_LT_RETURN_IF_ERROR(cublasLtMatmul(impl_->handle, plan->desc, &alpha, g.w, plan->a, g.x,
                                        plan->b, &beta, g.out, plan->c, g.out, plan->c, &plan->algo,
                                        impl_->workspace, impl_->workspace_bytes, stream));
  return Status::Ok();
}

}  // namespace ite::kernels
