// SPDX-License-Identifier: MIT
// Physical core count for the default thread count. Matmul threads that share one core's
// execution units gain little, so the default is one thread per physical core the process may
// use (its affinity mask), not one per logical CPU.
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "cpu.h"

#if defined(__linux__)
#include <sched.h>
#endif

namespace geb::cpu {
namespace {

unsigned logical_fallback() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

#if defined(__linux__)

bool read_int_file(const std::string& path, long& value) {
  std::ifstream in(path);
  if (!in) return false;
  in >> value;
  return static_cast<bool>(in);
}

// Counts distinct (package, core) pairs among the CPUs in the affinity mask, from sysfs.
// Returns 0 when sysfs has no topology for them (some containers hide it).
unsigned count_from_sysfs(const cpu_set_t& allowed) {
  std::set<std::pair<long, long>> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    long package = 0;
    long core = 0;
    if (!read_int_file(dir + "physical_package_id", package)) return 0;
    if (!read_int_file(dir + "core_id", core)) return 0;
    cores.emplace(package, core);
  }
  return static_cast<unsigned>(cores.size());
}

// Counts distinct ("physical id", "core id") pairs among allowed processors in /proc/cpuinfo.
// Returns 0 when the file lacks those fields (as on many aarch64 kernels).
unsigned count_from_cpuinfo(const cpu_set_t& allowed) {
  std::ifstream in("/proc/cpuinfo");
  if (!in) return 0;
  std::set<std::pair<long, long>> cores;
  long processor = -1, package = -1, core = -1;
  auto flush = [&]() {
    if (processor >= 0 && processor < CPU_SETSIZE && CPU_ISSET(processor, &allowed) && core >= 0) {
      cores.emplace(package, core);
    }
    processor = package = core = -1;
  };
  auto value_of = [](const std::string& line) -> long {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return -1;
    try {
      return std::stol(line.substr(colon + 1));
    } catch (...) {
      return -1;
    }
  };
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) {
      flush();
    } else if (line.rfind("processor", 0) == 0) {
      processor = value_of(line);
    } else if (line.rfind("physical id", 0) == 0) {
      package = value_of(line);
    } else if (line.rfind("core id", 0) == 0) {
      core = value_of(line);
    }
  }
  flush();
  return static_cast<unsigned>(cores.size());
}

#endif  // __linux__

}  // namespace

unsigned physical_core_count() {
#if defined(__linux__)
  // NOTE: a cgroup CPU quota (such as `docker run --cpus=2`) is not read, so a container limited
  // by quota rather than by cpuset gets the host's core count.
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return logical_fallback();
  if (const unsigned n = count_from_sysfs(allowed); n > 0) return n;
  if (const unsigned n = count_from_cpuinfo(allowed); n > 0) return n;
  return logical_fallback();
#else
  // TODO: use sysctl hw.physicalcpu on macOS and GetLogicalProcessorInformation on Windows.
  return logical_fallback();
#endif
}

}  // namespace geb::cpu
