// File: fuzz_control_plane.h
// A real control plane for the fuzz targets: SQLite store in a fresh temp dir (with the default
// app "app-id" / "app-key" / "app-secret"), gRPC on a free loopback port. Started on first use
// and never torn down (libFuzzer exits from wherever it likes); its data dir goes at exit.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "common/crypto.h"
#include "controlplane/control_plane.h"

namespace relay::fuzz {

inline controlplane::ControlPlane& FuzzControlPlane(controlplane::ControlPlaneOptions o = {}) {
  static controlplane::ControlPlane* cp = [&o] {
    static const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("relay-fuzz-" + common::RandomHex(6));
    o.host = "127.0.0.1";
    o.grpc_port = 0;
    o.data_dir = dir.string();
    auto* started = new controlplane::ControlPlane(o);
    if (!started->Start().ok()) std::abort();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    });
    return started;
  }();
  return *cp;
}

}  // namespace relay::fuzz
