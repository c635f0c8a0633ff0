#include "common/protocol/sampling_params.h"

#include <cmath>

namespace ite {

Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0f)
    return InvalidArgument("sampling: temperature {} must be >= 0", temperature);
  if (top_k < 0) return InvalidArgument("sampling: top_k {} must be >= 0", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f))
    return InvalidArgument("sampling: top_p {} must be in (0, 1]", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f))
    return InvalidArgument("sampling: min_p {} must be in [0, 1]", min_p);
  if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0.0f)
    return InvalidArgument("sampling: repetition_penalty {} must be > 0", repetition_penalty);
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    return InvalidArgument("sampling: presence_penalty {} must be in [-2, 2]", presence_penalty);
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    return InvalidArgument("sampling: frequency_penalty {} must be in [-2, 2]", frequency_penalty);
  if (top_logprobs < 0 || top_logprobs > 20)
    return InvalidArgument("sampling: top_logprobs {} must be in [0, 20]", top_logprobs);
  return Status::Ok();
}

}  // namespace ite
