// Repacking of Q4_0 and Q8_0 matrices in groups of 8 rows at load (see repack.h and the layouts
// in kernels/quant.h).
#include "repack.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "error.h"
#include "kernels/quant.h"

namespace geb {
namespace {

// Groups handed to a thread at a time: about 0.6 MB of a 2048-wide Q4_0 matrix, so claims are
// rare and the threads still share the last matrix evenly.
constexpr int64_t kRepackChunkGroups = 64;

}  // namespace

RepackedWeights::RepackedWeights(Model& model, const kernels::KernelTable& table, ThreadPool& pool) {
  // one region for every eligible matrix, each copy starting on a 64-byte boundary
  struct Job {
    Matrix* m;
    size_t offset;
    int64_t groups;
  };
  std::vector<Job> jobs;
  size_t total = 0;
  for (Matrix* m : model.matmul_weights()) {
    const bool quantized = m->type == kernels::WeightType::Q4_0 || m->type == kernels::WeightType::Q8_0;
    if (!quantized || m->repacked_x8 || table.matmul_x8[static_cast<int>(m->type)] == nullptr) continue;
    jobs.push_back({m, total, (m->rows + kernels::kRepackRows - 1) / kernels::kRepackRows});
    total += (kernels::repacked_bytes(m->type, m->rows, static_cast<int>(m->cols)) + 63) / 64 * 64;
  }
  if (jobs.empty()) return;

  void* mapped = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) {
    throw EngineError(ErrorCode::Internal, "cannot allocate " + std::to_string(total) + " bytes for the repacked quantized weights: " +
                                               std::strerror(errno) + "; free memory or choose the scalar tier, which keeps the file's layout");
  }
  // Ask for 2 MiB pages. Decode reads these weights in several streams per thread, and with 4 KiB
  // pages each stream needs a new TLB entry every 4 KiB. On a loaded 2-core Zen 3 VM (medians of 3
  // alternating runs), Q4_0 decode at 2 threads rose from about 24-33 to about 40 tokens/s.
  // NOTE: the cost is at load. Under THP defrag "madvise" the kernel compacts memory to find
  // 2 MiB pages, which added between nothing and about 0.7 s to the repack of the 1.3B Q8_0 file.
  // If the OS refuses (THP "never"), the weights stay in 4 KiB pages and decode is slower.
#ifdef MADV_HUGEPAGE
  ::madvise(mapped, total, MADV_HUGEPAGE);
#endif
  data_ = static_cast<uint8_t*>(mapped);
  size_ = total;

  // The groups of all matrices form one range, so the threads split the work evenly.
  std::vector<int64_t> first_group(jobs.size() + 1, 0);
  for (size_t i = 0; i < jobs.size(); ++i) first_group[i + 1] = first_group[i] + jobs[i].groups;
  pool.parallel_for(first_group.back(), kRepackChunkGroups, [&](int64_t begin, int64_t end, int) {
    for (size_t i = 0; i < jobs.size(); ++i) {
      const int64_t lo = begin > first_group[i] ? begin : first_group[i];
      const int64_t hi = end < first_group[i + 1] ? end : first_group[i + 1];
      if (lo >= hi) continue;
      const Matrix& m = *jobs[i].m;
      kernels::repack_x8(m.type, m.data, m.row_stride, m.rows, static_cast<int>(m.cols), lo - first_group[i], hi - first_group[i],
                             data_ + jobs[i].offset);
    }
  });

  for (const Job& job : jobs) {
    model.release_file_bytes(*job.m);
    job.m->data = data_ + job.offset;
    job.m->repacked_x8 = true;
  }
  matrices_ = static_cast<int>(jobs.size());
}

RepackedWeights::~RepackedWeights() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

}  // namespace geb
