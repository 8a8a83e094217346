#include "pipeline/moefy.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <span>
#include <tuple>

#include "io/gguf_writer.h"
#include "lutqfile/lutq_file.h"
#include "model/config.h"
#include "model/model.h"
#include "pipeline/moefy_router.h"

namespace lutq::pipeline {
namespace {

std::vector<float> unit_rows(const float* x, int64_t n, int64_t d) {
  std::vector<float> u(x, x + n * d);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0.0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(u[static_cast<size_t>(i * d + j)]) * u[static_cast<size_t>(i * d + j)];
    const float inv = ss > 0.0 ? static_cast<float>(1.0 / std::sqrt(ss)) : 0.0f;
    for (int64_t j = 0; j < d; ++j) u[static_cast<size_t>(i * d + j)] *= inv;
  }
  return u;
}

// Each row to a cluster with room left, best (row, cluster) similarities first.
std::vector<int32_t> assign_balanced(const std::vector<float>& u, const std::vector<float>& centroids, int64_t n,
                                     int64_t d, int64_t clusters) {
  std::vector<std::tuple<float, int32_t, int32_t>> pairs;
  pairs.reserve(static_cast<size_t>(n * clusters));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < clusters; ++c) {
      double s = 0.0;
      for (int64_t j = 0; j < d; ++j) {
        s += static_cast<double>(u[static_cast<size_t>(i * d + j)]) * centroids[static_cast<size_t>(c * d + j)];
      }
      pairs.emplace_back(static_cast<float>(s), static_cast<int32_t>(i), static_cast<int32_t>(c));
    }
  }
  std::sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
    return std::tie(std::get<1>(a), std::get<2>(a)) < std::tie(std::get<1>(b), std::get<2>(b));
  });
  std::vector<int32_t> cluster(static_cast<size_t>(n), -1);
  std::vector<int64_t> room(static_cast<size_t>(clusters), n / clusters);
  for (const auto& [s, i, c] : pairs) {
    if (cluster[static_cast<size_t>(i)] >= 0 || room[static_cast<size_t>(c)] == 0) continue;
    cluster[static_cast<size_t>(i)] = c;
    --room[static_cast<size_t>(c)];
  }
  return cluster;
}

std::vector<float> centroids_of(const std::vector<float>& u, const std::vector<int32_t>& cluster, int64_t d,
                                int64_t clusters) {
  std::vector<float> c(static_cast<size_t>(clusters * d), 0.0f);
  for (size_t i = 0; i < cluster.size(); ++i) {
    for (int64_t j = 0; j < d; ++j) c[static_cast<size_t>(cluster[i] * d + j)] += u[i * static_cast<size_t>(d) + static_cast<size_t>(j)];
  }
  return unit_rows(c.data(), clusters, d);
}

Status fail(const io::Checkpoint& in, const std::string& msg) { return Status::invalid(in.path() + ": moefy: " + msg); }

Result<std::vector<float>> read(const io::Checkpoint& in, const std::string& name) {
  const io::TensorInfo* t = in.find_tensor(name);
  if (t == nullptr) return fail(in, "missing tensor '" + name + "'");
  return in.dequantize(*t);
}

Status add_f32(io::GgufWriter& out, const std::string& name, std::vector<int64_t> dims, const std::vector<float>& v) {
  return out.add_tensor(name, std::move(dims), io::GgmlType::F32,
                        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)));
}

// Layer l's neuron clusters (from its gate rows) and mean-gate-row router [E][e].
Status cluster_layer(const io::Checkpoint& in, const ModelConfig& c, const MoefyOptions& opt, int64_t l,
                     std::vector<int32_t>& cluster, std::vector<float>& router) {
  Result<std::vector<float>> gate = read(in, "blk." + std::to_string(l) + ".ffn_gate.weight");  // [n_ff][e]
  if (!gate) return gate.status();
  const int64_t e = c.n_embd, E = opt.experts;
  cluster = balanced_clusters(gate->data(), c.n_ff, e, E, opt.iterations, opt.seed + static_cast<uint32_t>(l));
  router.assign(static_cast<size_t>(E * e), 0.0f);
  const float inv = static_cast<float>(E) / static_cast<float>(c.n_ff);
  for (int64_t i = 0; i < c.n_ff; ++i) {
    float* row = router.data() + cluster[static_cast<size_t>(i)] * e;
    for (int64_t j = 0; j < e; ++j) row[j] += (*gate)[static_cast<size_t>(i * e + j)] * inv;
  }
  return Status::ok();
}

// Layer l's experts, split from its dense FFN by `cluster`, and its router.
Status split_layer(const io::Checkpoint& in, const ModelConfig& c, const MoefyOptions& opt, int64_t l,
                   const std::vector<int32_t>& cluster, const std::vector<float>& router, io::GgufWriter& out) {
  const std::string p = "blk." + std::to_string(l) + ".";
  Result<std::vector<float>> gate = read(in, p + "ffn_gate.weight");  // [n_ff][e]
  if (!gate) return gate.status();
  Result<std::vector<float>> up = read(in, p + "ffn_up.weight");  // [n_ff][e]
  if (!up) return up.status();
  Result<std::vector<float>> down = read(in, p + "ffn_down.weight");  // [e][n_ff]
  if (!down) return down.status();
  const int64_t e = c.n_embd, ff = c.n_ff, E = opt.experts, fe = ff / E;
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(E));
  for (int64_t i = 0; i < ff; ++i) members[static_cast<size_t>(cluster[static_cast<size_t>(i)])].push_back(i);
  std::vector<float> g(static_cast<size_t>(E * fe * e)), u(g.size()), d(g.size());
  for (int64_t x = 0; x < E; ++x) {
    const std::vector<int64_t>& rows = members[static_cast<size_t>(x)];
    for (int64_t r = 0; r < fe; ++r) {
      const int64_t i = rows[static_cast<size_t>(r)];
      std::copy_n(gate->begin() + i * e, e, g.begin() + (x * fe + r) * e);
      std::copy_n(up->begin() + i * e, e, u.begin() + (x * fe + r) * e);
      for (int64_t j = 0; j < e; ++j) d[static_cast<size_t>((x * e + j) * fe + r)] = (*down)[static_cast<size_t>(j * ff + i)];
    }
  }
  if (Status s = add_f32(out, p + "ffn_gate_inp.weight", {e, E}, router); !s) return s;
  if (Status s = add_f32(out, p + "ffn_gate_exps.weight", {e, fe, E}, g); !s) return s;
  if (Status s = add_f32(out, p + "ffn_up_exps.weight", {e, fe, E}, u); !s) return s;
  return add_f32(out, p + "ffn_down_exps.weight", {fe, e, E}, d);
}

bool dense_ffn(const std::string& name) {
  return name.starts_with("blk.") && (name.ends_with(".ffn_gate.weight") || name.ends_with(".ffn_up.weight") ||
                                      name.ends_with(".ffn_down.weight"));
}

Status check_input(const io::Checkpoint& in, const ModelConfig& c, const MoefyOptions& opt) {
  if (c.arch != "llama" && c.arch != "qwen2" && c.arch != "qwen3") {
    return fail(in, "architecture '" + c.arch + "' is not supported (llama, qwen2, qwen3)");
  }
  if (c.n_expert > 0) return fail(in, "already a mixture-of-experts model (" + c.arch + ".expert_count)");
  if (opt.experts < 2 || c.n_ff % opt.experts != 0) {
    return fail(in, "--experts " + std::to_string(opt.experts) + " must be at least 2 and divide the FFN width " +
                        std::to_string(c.n_ff));
  }
  if (opt.top_k < 1 || opt.top_k > opt.experts) {
    return fail(in, "--top-k " + std::to_string(opt.top_k) + " must be in 1.." + std::to_string(opt.experts));
  }
  return Status::ok();
}

}  // namespace

std::vector<int32_t> balanced_clusters(const float* x, int64_t n, int64_t d, int64_t clusters, int iterations,
                                       uint32_t seed) {
  const std::vector<float> u = unit_rows(x, n, d);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<float> centroids(static_cast<size_t>(clusters * d));
  for (int64_t c = 0; c < clusters; ++c) {
    std::copy_n(u.begin() + order[static_cast<size_t>(c)] * d, d, centroids.begin() + c * d);
  }
  std::vector<int32_t> cluster = assign_balanced(u, centroids, n, d, clusters);
  for (int it = 0; it < iterations; ++it) {
    centroids = centroids_of(u, cluster, d, clusters);
    std::vector<int32_t> next = assign_balanced(u, centroids, n, d, clusters);
    if (next == cluster) break;
    cluster = std::move(next);
  }
  return cluster;
}

Result<MoefyReport> moefy_to_file(const io::Checkpoint& in, const MoefyOptions& opt, const std::string& out_path,
                                  ThreadPool& pool) {
  const auto t0 = std::chrono::steady_clock::now();
  Result<bool> is_lutq = lutqfile::is_lutq_file(in);
  if (!is_lutq) return is_lutq.status();
  if (*is_lutq) return fail(in, "a lutq file; convert the original GGUF, then quantize");
  Result<ModelConfig> config = ModelConfig::from_checkpoint(in);
  if (!config) return config.status();
  const ModelConfig& c = *config;
  if (Status s = check_input(in, c, opt); !s) return s;

  std::vector<std::vector<int32_t>> clusters(static_cast<size_t>(c.n_layer));
  std::vector<std::vector<float>> routers(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const auto i = static_cast<size_t>(l);
    if (Status s = cluster_layer(in, c, opt, l, clusters[i], routers[i]); !s) return s;
  }
  MoefyReport r;
  if (!opt.calib.empty()) {
    Result<Model> dense = Model::load(in, {}, pool);
    if (!dense) return dense.status();
    Result<std::vector<std::vector<float>>> fitted = fit_routers(*dense, clusters, opt.experts, opt.calib, opt.ridge, pool);
    if (!fitted) return fitted.status();
    routers = std::move(*fitted);
    for (const std::vector<int32_t>& ch : opt.calib) r.calib_tokens += static_cast<int64_t>(ch.size());
  }

  io::GgufWriter out;
  for (const std::string& key : in.keys()) {
    if (Status s = out.add(key, *in.find(key)); !s) return Status(s.code(), out_path + ": " + s.message());
  }
  const std::string a = c.arch + ".";
  for (Status s : {out.add_uint32(a + "expert_count", static_cast<uint32_t>(opt.experts)),
                   out.add_uint32(a + "expert_used_count", static_cast<uint32_t>(opt.top_k)),
                   out.add_uint32(a + "expert_feed_forward_length", static_cast<uint32_t>(c.n_ff / opt.experts)),
                   out.add_bool(a + "expert_unit_weights", true)}) {
    if (!s) return Status(s.code(), out_path + ": " + s.message());
  }
  for (const io::TensorInfo& t : in.tensors()) {
    if (dense_ffn(t.name)) continue;
    const std::span<const uint8_t> raw = in.tensor_bytes(t);
    if (raw.empty()) return fail(in, "tensor '" + t.name + "' has no stored bytes to copy");
    if (Status s = out.add_tensor(t.name, t.dims, t.type, raw); !s) return Status(s.code(), out_path + ": " + s.message());
  }
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const auto i = static_cast<size_t>(l);
    if (Status s = split_layer(in, c, opt, l, clusters[i], routers[i], out); !s) return s;
  }
  if (Status s = out.write_file(out_path); !s) return s;
  r.arch = c.arch;
  r.layers = c.n_layer;
  r.n_ff = c.n_ff;
  r.n_ff_exp = c.n_ff / opt.experts;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace lutq::pipeline
