// Switches read from the environment (measuring knobs, opt-in experiments): a variable is on when
// it is set and its value is not empty and does not start with "0" ("1", "yes": on; "", "0": off).
#pragma once

namespace ite {

bool EnvFlag(const char* name);

}  // namespace ite
