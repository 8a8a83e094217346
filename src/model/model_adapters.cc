// Model::add_adapter: per-request scale adapters (model/model.h, model/adapter_rows.h).
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lutqfile/adapter.h"
#include "model/model.h"

namespace lutq::model {

Result<Model::AddedAdapter> Model::add_adapter(const lutqfile::Adapter& adapter) {
  if (shard_) {
    return Status::invalid(adapter.path() + ": per-request adapters need the whole model on one process (tensor "
                           "parallelism shards the scales); apply it at load with --adapter instead");
  }
  const std::vector<std::string> wanted = adapter.names();
  const std::set<std::string, std::less<>> names(wanted.begin(), wanted.end());
  AddedAdapter added;
  added.index = n_adapters_ + 1;
  std::vector<std::pair<Linear*, Linear>> made;  // set only once every matrix has been built
  std::set<std::string> used;
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    for (int r = 0; r < kNumLinearRoles; ++r) {
      const auto role = static_cast<LinearRole>(r);
      const std::string name = "blk." + std::to_string(l) + "." + role_name(role) + ".weight";
      Linear* lin = find_linear(l, role);
      if (lin == nullptr || lin->bcq() == nullptr || !names.contains(name)) continue;
      format::BcqMatrix w = lin->bcq()->unpack();
      Result<bool> applied = adapter.apply(name, w);
      if (!applied) return applied.status();
      if (!*applied) continue;
      Result<Linear> alt = Linear::from_bcq(w, lin->bcq()->isa(), lin->bcq()->precision());
      if (!alt) return Status(alt.status().code(), adapter.path() + ": " + name + ": " + alt.status().message());
      added.bytes += alt->weight_bytes();
      ++added.layers;
      made.emplace_back(lin, std::move(*alt));
      used.insert(name);
    }
  }
  for (const std::string& name : wanted) {
    if (used.contains(name)) continue;
    return Status::invalid(adapter.path() + ": the adapter has scales for '" + name +
                           "', which is not a BCQ layer of this model's blocks (an adapter for another model? "
                           "per-request adapters change block layers only)");
  }
  for (auto& [lin, alt] : made) {
    if (Status s = lin->set_adapted(added.index, std::move(alt)); !s) return s;
  }
  n_adapters_ = added.index;
  return added;
}

}  // namespace lutq::model
