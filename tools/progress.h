// Progress of a long run (`marconi sim`, `sweep`, `place`, `trace build`) on one updating stderr
// line, e.g. "sim: 1200/3480 requests (marconi)", only when stderr is a terminal: redirected
// output (tests, CI, logs) stays clean.
#ifndef MARCONI_TOOLS_PROGRESS_H_
#define MARCONI_TOOLS_PROGRESS_H_

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>

namespace marconi::tools {

class Progress {
 public:
  explicit Progress(std::string label, bool enabled = isatty(STDERR_FILENO) != 0)
      : label_(std::move(label)), enabled_(enabled) {}
  ~Progress() { Finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Shows "LABEL: DONE/TOTAL UNIT (WHAT)". Thread-safe; redraws at most every 100 ms, and always
  // for the last step.
  void Update(size_t done, size_t total, const std::string& unit, const std::string& what = "") {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (shown_ && done < total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    shown_ = true;
    std::fprintf(stderr, "\r\033[K%s: %zu/%zu %s%s%s%s", label_.c_str(), done, total, unit.c_str(),
                 what.empty() ? "" : " (", what.c_str(), what.empty() ? "" : ")");
    std::fflush(stderr);
  }

  // A callback for the simulator's progress hooks: Update(done, total, unit, what).
  std::function<void(size_t, size_t)> Callback(std::string unit, std::string what = "") {
    if (!enabled_) return {};
    return [this, unit = std::move(unit), what = std::move(what)](size_t done, size_t total) {
      Update(done, total, unit, what);
    };
  }

  // Erases the line (before the results are printed).
  void Finish() {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (shown_) std::fputs("\r\033[K", stderr);
    shown_ = false;
  }

 private:
  std::string label_;
  bool enabled_;
  std::mutex mutex_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_PROGRESS_H_
