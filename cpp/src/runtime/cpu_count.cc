#include "runtime/cpu_count.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

namespace rtmobile {
namespace {

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::optional<long long> read_number(const std::string& path) {
  const std::optional<std::string> text = read_text(path);
  if (!text) return std::nullopt;
  std::istringstream s(*text);
  long long v = 0;
  if (!(s >> v)) return std::nullopt;
  return v;
}

std::optional<int> ceil_ratio(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  const long long cpus = (quota + period - 1) / period;
  return static_cast<int>(std::clamp<long long>(cpus, 1, 1 << 16));
}

#if defined(__linux__)
// The process's own cgroup v2 directory ("0::/some/path" in /proc/self/cgroup).
std::string own_cgroup_v2_dir() {
  const std::optional<std::string> text = read_text("/proc/self/cgroup");
  if (text) {
    std::istringstream lines(*text);
    std::string line;
    while (std::getline(lines, line))
      if (line.rfind("0::", 0) == 0) return "/sys/fs/cgroup" + line.substr(3);
  }
  return "/sys/fs/cgroup";
}

std::optional<int> cgroup_cpus() {
  // v2: the process's own cgroup and every ancestor can carry a quota; the smallest applies.
  std::optional<int> best;
  for (std::string dir = own_cgroup_v2_dir(); dir.rfind("/sys/fs/cgroup", 0) == 0;) {
    if (const std::optional<std::string> text = read_text(dir + "/cpu.max")) {
      const std::optional<int> cpus = cpus_from_cgroup_v2(*text);
      if (cpus && (!best || *cpus < *best)) best = cpus;
    }
    if (dir == "/sys/fs/cgroup") break;
    dir = dir.substr(0, dir.find_last_of('/'));
  }
  if (best) return best;
  for (const char* dir : {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"}) {
    const std::optional<long long> quota = read_number(std::string(dir) + "/cpu.cfs_quota_us");
    const std::optional<long long> period =
        read_number(std::string(dir) + "/cpu.cfs_period_us");
    if (quota && period) return cpus_from_cgroup_v1(*quota, *period);
  }
  return std::nullopt;
}
#endif

}  // namespace

std::optional<int> cpus_from_cgroup_v2(std::string_view cpu_max) {
  std::istringstream s{std::string(cpu_max)};
  std::string quota;
  long long period = 0;
  if (!(s >> quota >> period) || quota == "max") return std::nullopt;
  try {
    size_t used = 0;
    const long long q = std::stoll(quota, &used);
    if (used != quota.size()) return std::nullopt;
    return ceil_ratio(q, period);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<int> cpus_from_cgroup_v1(long long quota_us, long long period_us) {
  return ceil_ratio(quota_us, period_us);
}

int usable_cpus() {
  int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  if (const std::optional<int> quota = cgroup_cpus()) cpus = std::min(cpus, *quota);
#endif
  return cpus;
}

}  // namespace rtmobile
