// GgufFile::open / from_memory: parsing and validation of the header, metadata and tensor
// directory. Nothing is allocated from a count before the count has been bounded by the bytes
// that are left in the file.
#include <algorithm>
#include <bit>
#include <limits>
#include <numeric>
#include <utility>

#include "io/gguf_file.h"

namespace lutq::io {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint64_t kMaxNameLength = 65535;   // keys and tensor names (GGUF spec: < 2^16)
// Smallest encodings, used to bound counts by the bytes left: a key/value pair (empty key, u8
// value), a tensor info (empty name, one dim), an array element of each kind.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
constexpr uint64_t kMinStringBytes = 8;
constexpr uint64_t kMinArrayBytes = 4 + 8;

std::string quoted(std::string_view s) {
  // Names come from the file: keep messages printable and short.
  std::string out = "'";
  const size_t n = std::min<size_t>(s.size(), 80);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > n) out += "...";
  return out + "'";
}

// Sequential little-endian reader with a sticky first error: after a failure every read returns
// zeros/empties and ok() stays false, so callers check ok() before acting on what they read.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& path) : bytes_(bytes), path_(path) {}

  bool ok() const { return status_.is_ok(); }
  const Status& status() const { return status_; }
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }
  uint64_t size() const { return bytes_.size(); }

  void fail(StatusCode code, const std::string& msg) {
    if (ok()) status_ = Status(code, path_ + ": " + msg);
  }

  // Returns a pointer to the next n bytes and advances, or nullptr (and fails) when fewer are left.
  // `what` + `suffix` name the field in the message (built only on failure).
  const uint8_t* take(uint64_t n, std::string_view what, std::string_view suffix = {}) {
    if (!ok()) return nullptr;
    if (n > remaining()) {
      fail(StatusCode::kCorrupt, "unexpected end of file reading " + std::string(what) + std::string(suffix) +
                                     " at offset " + std::to_string(pos_) + " (needs " + std::to_string(n) +
                                     " bytes, file is " + std::to_string(size()) + " bytes)");
      return nullptr;
    }
    const uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }

  uint64_t uint(size_t n, std::string_view what, std::string_view suffix = {}) {
    const uint8_t* p = take(n, what, suffix);
    if (p == nullptr) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
  }
  uint32_t u32(std::string_view what, std::string_view suffix = {}) {
    return static_cast<uint32_t>(uint(4, what, suffix));
  }
  uint64_t u64(std::string_view what, std::string_view suffix = {}) { return uint(8, what, suffix); }

  // A GGUF string: u64 length, then the bytes; the length is checked against the bytes left
  // (and against max_len when nonzero) before anything is allocated.
  std::string str(const std::string& what, uint64_t max_len) {
    const uint64_t len_pos = pos_;
    const uint64_t len = u64(what, " length");
    if (!ok()) return {};
    if (len > remaining()) {
      fail(StatusCode::kCorrupt, what + " length " + std::to_string(len) + " at offset " + std::to_string(len_pos) +
                                     " runs past the end of the file (" + std::to_string(remaining()) + " bytes left)");
      return {};
    }
    if (max_len != 0 && len > max_len) {
      fail(StatusCode::kCorrupt, what + " length " + std::to_string(len) + " at offset " + std::to_string(len_pos) +
                                     " exceeds the maximum of " + std::to_string(max_len));
      return {};
    }
    const uint8_t* p = take(len, what);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), len);
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& path_;
  uint64_t pos_ = 0;
  Status status_;
};

GgufValue parse_value(Reader& r, GgufValueType type, int depth, const std::string& what);

// Array body after its value type: u32 element type, u64 count, elements.
GgufValue parse_array(Reader& r, int depth, const std::string& what) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  const uint32_t elem_code = r.u32(what, " array element type");
  const uint64_t count_pos = r.pos();
  const uint64_t count = r.u64(what, " array length");
  if (!r.ok()) return v;
  if (!gguf_value_type_known(elem_code)) {
    r.fail(StatusCode::kCorrupt, what + " has unknown array element type " + std::to_string(elem_code));
    return v;
  }
  const auto elem = static_cast<GgufValueType>(elem_code);
  if (elem == GgufValueType::ARRAY && depth + 1 > kGgufMaxArrayDepth) {
    r.fail(StatusCode::kCorrupt, what + " nests arrays deeper than " + std::to_string(kGgufMaxArrayDepth) + " levels");
    return v;
  }
  v.elem_type = elem;
  const size_t scalar = gguf_scalar_size(elem);
  const uint64_t min_elem = scalar != 0 ? scalar : (elem == GgufValueType::STRING ? kMinStringBytes : kMinArrayBytes);
  if (count > r.remaining() / min_elem) {
    r.fail(StatusCode::kCorrupt, what + " array of " + std::to_string(count) + " " + gguf_value_type_name(elem) +
                                     " elements at offset " + std::to_string(count_pos) + " cannot fit in the " +
                                     std::to_string(r.remaining()) + " bytes left in the file");
    return v;
  }
  v.count = count;
  if (scalar != 0) {
    const uint8_t* p = r.take(count * scalar, what, " array data");
    if (p == nullptr) return v;
    v.raw.assign(p, p + count * scalar);
    if (elem == GgufValueType::BOOL) {
      for (uint64_t i = 0; i < count; ++i) {
        if (p[i] > 1) {
          r.fail(StatusCode::kCorrupt, what + " bool array element " + std::to_string(i) + " is " +
                                           std::to_string(p[i]) + " (must be 0 or 1)");
          return v;
        }
      }
    }
  } else if (elem == GgufValueType::STRING) {
    v.strings.reserve(count);  // bounded above: count <= remaining / 8
    const std::string label = what + " string element";
    for (uint64_t i = 0; i < count && r.ok(); ++i) v.strings.push_back(r.str(label, 0));
  } else {
    for (uint64_t i = 0; i < count && r.ok(); ++i) {
      v.items.push_back(parse_value(r, GgufValueType::ARRAY, depth + 1, what));
    }
  }
  return v;
}

GgufValue parse_value(Reader& r, GgufValueType type, int depth, const std::string& what) {
  if (type == GgufValueType::ARRAY) return parse_array(r, depth, what);
  if (type == GgufValueType::STRING) return GgufValue::make_string(r.str(what + " string", 0));
  const uint64_t value_pos = r.pos();
  const uint64_t bits = r.uint(gguf_scalar_size(type), what, " value");
  if (!r.ok()) return {};
  switch (type) {
    case GgufValueType::BOOL:
      if (bits > 1) {
        r.fail(StatusCode::kCorrupt, what + " bool value " + std::to_string(bits) + " at offset " +
                                         std::to_string(value_pos) + " is not 0 or 1");
      }
      return GgufValue::make_bool(bits != 0);
    case GgufValueType::INT8:
    case GgufValueType::INT16:
    case GgufValueType::INT32:
    case GgufValueType::INT64: return GgufValue::make_int(type, static_cast<int64_t>(bits));
    case GgufValueType::FLOAT32: return GgufValue::make_float32(std::bit_cast<float>(static_cast<uint32_t>(bits)));
    case GgufValueType::FLOAT64: return GgufValue::make_float64(std::bit_cast<double>(bits));
    default: return GgufValue::make_uint(type, bits);
  }
}

// general.alignment: any integer type holding a nonzero power of two that fits uint32.
Status read_alignment(const GgufValue& v, const std::string& path, uint32_t& alignment) {
  const std::string prefix = path + ": general.alignment ";
  if (!gguf_is_integer(v.type)) {
    return {StatusCode::kCorrupt, prefix + "is " + v.type_description() + ", expected uint32"};
  }
  const bool negative = gguf_is_signed(v.type) && v.i64 < 0;
  const uint64_t a = gguf_is_signed(v.type) ? static_cast<uint64_t>(v.i64) : v.u64;
  if (negative || a == 0 || a > std::numeric_limits<uint32_t>::max() || !std::has_single_bit(a)) {
    return {StatusCode::kCorrupt,
            prefix + (negative ? std::to_string(v.i64) : std::to_string(a)) + " is not a nonzero power of two"};
  }
  alignment = static_cast<uint32_t>(a);
  return Status::ok();
}

std::string version_error(uint32_t version) {
  if (version == 1) return "GGUF version 1 is not supported (only versions 2 and 3)";
  return "unsupported GGUF version " + std::to_string(version) + " (only versions 2 and 3)";
}

}  // namespace

Result<GgufFile> GgufFile::open(const std::string& path) {
  Result<MappedFile> mapped = MappedFile::open(path);
  if (!mapped) return mapped.status();
  GgufFile f;
  f.path_ = path;
  f.mapped_ = std::move(mapped).value();
  return parse(std::move(f));
}

Result<GgufFile> GgufFile::from_memory(std::vector<uint8_t> bytes, std::string name) {
  GgufFile f;
  f.path_ = std::move(name);
  f.buffer_ = std::move(bytes);
  return parse(std::move(f));
}

Result<GgufFile> GgufFile::parse(GgufFile f) {
  const std::span<const uint8_t> bytes = f.bytes();
  const std::string& path = f.path_;
  Reader r(bytes, path);

  // Header.
  const uint8_t* magic = r.take(4, "magic");
  if (magic == nullptr) return r.status();
  const uint32_t magic_le = static_cast<uint32_t>(magic[0]) | static_cast<uint32_t>(magic[1]) << 8 |
                            static_cast<uint32_t>(magic[2]) << 16 | static_cast<uint32_t>(magic[3]) << 24;
  if (magic_le != kGgufMagic) {
    return Status(StatusCode::kCorrupt, path + ": not a GGUF file (bad magic " +
                                            quoted(std::string_view(reinterpret_cast<const char*>(magic), 4)) +
                                            ", expected 'GGUF')");
  }
  const uint32_t version = r.u32("version");
  if (!r.ok()) return r.status();
  const uint32_t swapped =
      (version >> 24) | ((version >> 8) & 0xff00u) | ((version << 8) & 0xff0000u) | (version << 24);
  if (version > 0xffff && swapped >= 1 && swapped <= 3) {
    return Status(StatusCode::kUnsupported, path + ": big-endian GGUF files are not supported (version field reads " +
                                                std::to_string(swapped) + " byte-swapped)");
  }
  if (version != 2 && version != 3) return Status(StatusCode::kUnsupported, path + ": " + version_error(version));
  f.version_ = version;
  const uint64_t tensor_count = r.u64("tensor count");
  const uint64_t kv_count = r.u64("metadata key/value count");
  if (!r.ok()) return r.status();
  if (kv_count > r.remaining() / kMinKvBytes) {
    return Status(StatusCode::kCorrupt, path + ": metadata key/value count " + std::to_string(kv_count) +
                                            " cannot fit in the file (" + std::to_string(r.size()) + " bytes)");
  }
  if (tensor_count > r.remaining() / kMinTensorInfoBytes ||
      kv_count * kMinKvBytes + tensor_count * kMinTensorInfoBytes > r.remaining()) {
    return Status(StatusCode::kCorrupt, path + ": tensor count " + std::to_string(tensor_count) +
                                            " cannot fit in the file (" + std::to_string(r.size()) + " bytes)");
  }

  // Metadata.
  f.kv_.reserve(kv_count);
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = r.str("metadata key #" + std::to_string(i), kMaxNameLength);
    const std::string what = "metadata key " + quoted(key);
    const uint32_t type_code = r.u32(what, " value type");
    if (!r.ok()) return r.status();
    if (!gguf_value_type_known(type_code)) {
      return Status(StatusCode::kCorrupt, path + ": " + what + " has unknown value type " + std::to_string(type_code));
    }
    GgufValue value = parse_value(r, static_cast<GgufValueType>(type_code), 1, what);
    if (!r.ok()) return r.status();
    if (!f.kv_index_.emplace(key, f.kv_.size()).second) {
      return Status(StatusCode::kCorrupt, path + ": duplicate metadata key " + quoted(key));
    }
    f.kv_.emplace_back(std::move(key), std::move(value));
  }
  if (const GgufValue* a = f.find("general.alignment"); a != nullptr) {
    if (Status s = read_alignment(*a, path, f.alignment_); !s) return s;
  }

  // Tensor directory.
  f.tensors_.reserve(tensor_count);  // bounded above by the bytes left
  for (uint64_t i = 0; i < tensor_count; ++i) {
    TensorInfo t;
    t.name = r.str("tensor #" + std::to_string(i) + " name", kMaxNameLength);
    const std::string what = "tensor " + quoted(t.name);
    const uint32_t n_dims = r.u32(what, " dimension count");
    if (!r.ok()) return r.status();
    if (n_dims == 0 || n_dims > kGgufMaxDims) {
      return Status(StatusCode::kCorrupt, path + ": " + what + " has " + std::to_string(n_dims) +
                                              " dimensions (must be 1.." + std::to_string(kGgufMaxDims) + ")");
    }
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = r.u64(what, " dimensions");
      if (!r.ok()) return r.status();
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Status(StatusCode::kCorrupt, path + ": " + what + " dimension " + std::to_string(d) + " is " +
                                                std::to_string(dim) + " (must be > 0 and fit int64)");
      }
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    const uint32_t type_code = r.u32(what, " type");
    t.offset = r.u64(what, " offset");
    if (!r.ok()) return r.status();
    t.type = static_cast<GgmlType>(type_code);
    if (!ggml_type_traits(t.type)) {
      return Status(StatusCode::kUnsupported,
                    path + ": " + what + " has unknown ggml type " + std::to_string(type_code));
    }
    Result<uint64_t> size = ggml_tensor_bytes(t.type, t.dims);
    if (!size) return Status(StatusCode::kCorrupt, path + ": " + what + " " + size.status().message());
    t.size_bytes = *size;
    if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second) {
      return Status(StatusCode::kCorrupt, path + ": duplicate tensor name " + quoted(t.name));
    }
    f.tensors_.push_back(std::move(t));
  }

  // Data section: starts at the next multiple of the alignment (it may lie past the end of a
  // file without tensors, which writers leave unpadded).
  const uint64_t file_size = r.size();
  f.data_offset_ = (r.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  for (const TensorInfo& t : f.tensors_) {
    const std::string what = "tensor " + quoted(t.name);
    if (t.offset % f.alignment_ != 0) {
      return Status(StatusCode::kCorrupt, path + ": " + what + " offset " + std::to_string(t.offset) +
                                              " is not a multiple of the alignment " + std::to_string(f.alignment_));
    }
    const bool fits = f.data_offset_ <= file_size && t.offset <= file_size - f.data_offset_ &&
                      t.size_bytes <= file_size - f.data_offset_ - t.offset;
    if (!fits) {
      return Status(StatusCode::kCorrupt,
                    path + ": " + what + " extends past the end of the file (offset " + std::to_string(t.offset) +
                        " in the data section at " + std::to_string(f.data_offset_) + ", size " +
                        std::to_string(t.size_bytes) + ", file " + std::to_string(file_size) + " bytes)");
    }
  }
  std::vector<size_t> order(f.tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorInfo& prev = f.tensors_[order[i - 1]];
    const TensorInfo& cur = f.tensors_[order[i]];
    if (prev.offset + prev.size_bytes > cur.offset) {  // both are inside the file: no overflow
      return Status(StatusCode::kCorrupt, path + ": tensors " + quoted(prev.name) + " and " + quoted(cur.name) +
                                              " overlap (offsets " + std::to_string(prev.offset) + " + " +
                                              std::to_string(prev.size_bytes) + " > " + std::to_string(cur.offset) +
                                              ")");
    }
  }
  return f;
}

}  // namespace lutq::io
