#include <condition_variable>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 0; i < n; i++) workers_.emplace_back([this] { run(); });
  }
  ~Pool() {
    { std::lock_guard<std::mutex> l(m_); stop_ = true; }
    cv_.notify_all();
    for (auto &w : workers_) w.join();
  }
  std::future<long> submit(std::function<long()> f) {
    auto task = std::make_shared<std::packaged_task<long()>>(std::move(f));
    auto fut = task->get_future();
    { std::lock_guard<std::mutex> l(m_); q_.push([task] { (*task)(); }); }
    cv_.notify_one();
    return fut;
  }
 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [this] { return stop_ || !q_.empty(); });
        if (stop_ && q_.empty()) return;
        job = std::move(q_.front());
        q_.pop();
      }
      job();
    }
  }
  std::vector<std::thread> workers_;
  std::queue<std::function<void()>> q_;
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
};

int main() {
  long total = 0;
  {
    Pool pool(4);
    std::vector<std::future<long>> fs;
    for (long i = 1; i <= 100; i++) fs.push_back(pool.submit([i] { long s = 0; for (long k = 1; k <= i * 1000; k++) s += k % 7; return s; }));
    for (auto &f : fs) total += f.get();
  }
  auto a = std::async(std::launch::async, [] { return 6 * 7; });
  auto b = std::async(std::launch::deferred, [] { return 8; });
  std::cout << "pool total " << total << ", async " << a.get() << ", deferred " << b.get() << std::endl;
}
