// File: store_import.h
// Moves an SQLite app store (`<data dir>/relay.db`) into etcd once, for a single control plane
// that becomes replicas (`relay-controlplane --etcd-endpoints ... --import-sqlite PATH`, see
// docs/scaling.md): apps, API tokens, node credentials, daily usage and the node registry, and
// the webhook endpoints and undelivered events of the webhooks.db beside it.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/etcd/etcd_client.h"

namespace relay::controlplane {

struct ImportSummary {
  size_t apps = 0;
  size_t tokens = 0;
  size_t node_tokens = 0;
  size_t usage_counts = 0;
  size_t nodes = 0;
  size_t webhooks = 0;        // endpoints
  size_t webhook_events = 0;  // undelivered events of their outboxes
  // etcd already held exactly these apps and tokens (an import run twice): nothing written.
  bool already_imported = false;
};

// `path`: the relay.db file, or a data dir holding one. Refuses (FAILED_PRECONDITION) when the
// etcd prefix already has apps, unless they and their tokens are the same as the file's.
absl::StatusOr<ImportSummary> ImportSqliteStore(const std::string& path, etcd::Client& client,
                                                const std::string& prefix);

}  // namespace relay::controlplane
