#include "common/hangup.h"

#include <pthread.h>

#include <csignal>
#include <ctime>

namespace relay::common {

HangupSignal::HangupSignal(std::function<void()> on_hangup) {
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hup, nullptr);
  thread_ = std::thread([this, hup, on_hangup = std::move(on_hangup)] {
    // This thread never takes the shutdown signals, whatever order main blocks them in.
    sigset_t others;
    sigemptyset(&others);
    sigaddset(&others, SIGINT);
    sigaddset(&others, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &others, nullptr);
    timespec tick{0, 200 * 1000 * 1000};
    while (!stop_.load()) {
      if (sigtimedwait(&hup, nullptr, &tick) == SIGHUP) on_hangup();
    }
  });
}

HangupSignal::~HangupSignal() {
  stop_.store(true);
  thread_.join();
}

}  // namespace relay::common
