// Switches read from the environment (measuring knobs, opt-in experiments): a variable is on when
// it is set and its value is not empty and does not start with "0" ("1", "yes": on; "", "0": off).
#pragma once

namespace ite {

bool EnvFlag(const char* name);

// A whole number from the environment, or `fallback` where the variable is unset, empty or not
// a number ("12": 12; "", "x", "3x": fallback).
int EnvInt(const char* name, int fallback);

}  // namespace ite
