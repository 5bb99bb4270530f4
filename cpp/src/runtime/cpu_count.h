// How many CPUs this process may really use: its affinity mask (taskset, cpusets, Android's
// big/little pinning), capped by a cgroup CPU quota (containers: docker --cpus, Kubernetes
// limits). hardware_concurrency() counts the machine's CPUs and ignores both.
#pragma once

#include <optional>
#include <string_view>

namespace rtmobile {

// At least 1.
int usable_cpus();

// CPUs a cgroup quota allows (quota / period, rounded up), or nullopt when unlimited or
// unreadable. `cpu_max` is cgroup v2's cpu.max ("max 100000" or "150000 100000").
std::optional<int> cpus_from_cgroup_v2(std::string_view cpu_max);
// cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us (quota -1 = unlimited).
std::optional<int> cpus_from_cgroup_v1(long long quota_us, long long period_us);

}  // namespace rtmobile
