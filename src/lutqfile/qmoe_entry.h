// QMoE-coded matrices in the lutq file (docs/format.md, "QMoE codes in the lutq file"). A
// dictionary D is stored once and shared by every matrix that names it:
//   metadata  lutq.qmoe_dict.D        int64 array [entries]
//   tensors   qmoe_dict.D.len         I8,  dims {entries}   run lengths 1..32
//             qmoe_dict.D.pos         I32, dims {entries}   +1 masks (bit j: symbol j of the run)
//             qmoe_dict.D.neg         I32, dims {entries}   −1 masks
// A coded matrix named N (the GGUF name of the dense weight, or expert e's matrix of a 3-D MoE
// tensor, lutqfile::expert_matrix_name: blk.0.ffn_up_exps.3.weight) is
//   metadata  lutq.qmoe.N             int64 array [n, k, codewords]
//             lutq.qmoe.N.dict        string, the dictionary's name D
//   tensors   N.qmoe_scale            F16, dims {n}
//             N.qmoe_offsets          I32, dims {n + 1}      row r = codewords [off[r], off[r+1])
//             N.qmoe_codes            I16, dims {codewords}  (dims {1} holding 0 when there are none)
// Every read is validated (format::validate) here, the one place a coded matrix from a file is
// checked (kernels::make_qmoe_weights takes it as a precondition); errors name the file and the
// tensor.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"
#include "format/qmoe_code.h"
#include "io/checkpoint.h"
#include "io/gguf_writer.h"

namespace lutq::lutqfile {

constexpr std::string_view kQmoeKeyPrefix = "lutq.qmoe.";
constexpr std::string_view kQmoeDictKeyPrefix = "lutq.qmoe_dict.";

// Adds dictionary `dict_name` (validated) to a file being written; once per file.
Status add_qmoe_dictionary(io::GgufWriter& out, const std::string& dict_name, const format::QmoeDictionary& d);

// Adds coded matrix `name` (validated) that uses dictionary `dict_name` (added separately).
Status add_qmoe(io::GgufWriter& out, const std::string& name, const format::QmoeMatrix& m, const std::string& dict_name);

// Reads the dictionaries of one file once, so the matrices that share one share it in memory.
class QmoeDictionaries {
 public:
  Result<std::shared_ptr<const format::QmoeDictionary>> get(const io::Checkpoint& ckpt, const std::string& dict_name);

 private:
  std::map<std::string, std::shared_ptr<const format::QmoeDictionary>> held_;
};

// Whether the file holds a QMoE matrix `name`.
bool has_qmoe(const io::Checkpoint& ckpt, std::string_view name);

// Reads and validates QMoE matrix `name`; nullopt when the file has none by that name.
Result<std::optional<format::QmoeMatrix>> read_qmoe(const io::Checkpoint& ckpt, std::string_view name,
                                                    QmoeDictionaries& dicts);

}  // namespace lutq::lutqfile
