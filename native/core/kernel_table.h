// Selection of the kernel table for a CPU tier. Tables are filled once, on first use.
#pragma once

#include "cpu/cpu.h"
#include "kernels/kernels.h"

namespace geb {

// Returns the kernels of `tier`. Throws EngineError (Unsupported) when the tier belongs to
// another architecture or this CPU cannot run it.
const kernels::KernelTable& kernel_table(cpu::Tier tier);

}  // namespace geb
