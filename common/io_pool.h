// File: io_pool.h
// A pool of single-threaded io_contexts, one per thread (shard per core). Work posted to one
// context runs on its own thread only, so objects owned by a context need no locks or strands.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace relay::common {

class IoPool {
 public:
  explicit IoPool(size_t threads);
  ~IoPool();
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  void Start(const std::string& name);
  // Stops every context and joins the threads. Idempotent.
  void Stop();

  size_t size() const { return contexts_.size(); }
  boost::asio::io_context& context(size_t i) { return *contexts_[i]; }
  // Round-robin pick for new work.
  boost::asio::io_context& Next();

 private:
  using Guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<Guard> guards_;
  std::vector<std::thread> threads_;
  size_t next_ = 0;
};

// Raises the soft limit on open files to the hard limit (each connection is a descriptor),
// warning when it stays low. Returns the resulting soft limit.
uint64_t RaiseFileLimit();

}  // namespace relay::common
