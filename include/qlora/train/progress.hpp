// What a training run shows while it runs: the process's current and peak memory, and the step line — a live bar
// redrawn in place when stderr is a terminal, one log line per logging step otherwise (files, pipes, CI logs).
//
//   [##########..........] step 12/30 | epoch 0.40 | loss 1.2345 | lr 0.0002 | grad_norm 3.1 | 230 tok/s | ETA 72s | mem 1.31 GiB (peak 1.45)
//
// Training on a GPU adds "| GPU 3.10 GiB (peak 4.25)": the GPU tensors' bytes from the device's allocator.
//
// Memory is the resident set (VmRSS) and its high-water mark (VmHWM) from /proc/self/status; where there is no
// /proc (macOS), the peak from getrusage and no current figure.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <sys/resource.h>
#include <unistd.h>

namespace qlora {

struct MemoryUse {
  double current_bytes = 0;  // 0 where unknown
  double peak_bytes = 0;
};

inline MemoryUse process_memory() {
  MemoryUse m;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    const auto kib = [&] { return std::strtod(line.c_str() + line.find(':') + 1, nullptr) * 1024.0; };
    if (line.rfind("VmRSS:", 0) == 0) m.current_bytes = kib();
    else if (line.rfind("VmHWM:", 0) == 0) m.peak_bytes = kib();
  }
  if (m.peak_bytes == 0) {
    rusage u{};
    if (getrusage(RUSAGE_SELF, &u) == 0)
#ifdef __APPLE__
      m.peak_bytes = static_cast<double>(u.ru_maxrss);  // bytes on macOS
#else
      m.peak_bytes = static_cast<double>(u.ru_maxrss) * 1024.0;  // KiB elsewhere
#endif
  }
  return m;
}

// "mem 1.31 GiB (peak 1.45)", or "peak mem 1.45 GiB" where the current figure is unknown.
inline std::string describe(const MemoryUse& m) {
  constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
  char buf[64];
  if (m.current_bytes > 0) std::snprintf(buf, sizeof buf, "mem %.2f GiB (peak %.2f)", m.current_bytes / GiB, m.peak_bytes / GiB);
  else std::snprintf(buf, sizeof buf, "peak mem %.2f GiB", m.peak_bytes / GiB);
  return buf;
}

// "GPU 3.10 GiB (peak 4.25)": the tensors a device's allocator holds now and at most since the run began (CUDA: the
// caching pool's bytes handed out, as torch.cuda.memory_allocated / max_memory_allocated).
inline std::string describe_device(const char* what, double current_bytes, double peak_bytes) {
  constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
  char buf[80];
  std::snprintf(buf, sizeof buf, "%s %.2f GiB (peak %.2f)", what, current_bytes / GiB, peak_bytes / GiB);
  return buf;
}

// The step line on stderr. On a terminal (and QLORA_PROGRESS is not "lines") the line is a bar redrawn in place;
// anything else the run prints first ends it with a newline (end_line), so messages never land inside the bar.
class ProgressLine {
 public:
  ProgressLine() {
    const char* mode = std::getenv("QLORA_PROGRESS");
    live_ = isatty(STDERR_FILENO) && !(mode && std::string(mode) == "lines");
  }
  bool live() const { return live_; }
  void show(long step, long total, const std::string& text) {
    if (!live_) {
      std::fprintf(stderr, "%s\n", text.c_str());
      return;
    }
    constexpr int width = 20;
    const int filled = total > 0 ? static_cast<int>(width * step / total) : 0;
    std::string bar = "[" + std::string(static_cast<std::size_t>(filled), '#') +
                      std::string(static_cast<std::size_t>(width - filled), '.') + "] ";
    std::fprintf(stderr, "\r\033[K%s%s", bar.c_str(), text.c_str());
    std::fflush(stderr);
    open_ = true;
  }
  // Before any other output: the bar stays as the last line it drew.
  void end_line() {
    if (!open_) return;
    std::fputc('\n', stderr);
    open_ = false;
  }

 private:
  bool live_ = false, open_ = false;
};

}  // namespace qlora
