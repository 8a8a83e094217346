#include "gen/chat_template.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace lutq::gen {
namespace {

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// The system message a ChatML template writes when messages[0] is not a system message: a
// literal '<|im_start|>system\n TEXT <|im_end|>' whose TEXT holds no quote or Jinja syntax.
std::string default_system_message(std::string_view source) {
  if (!contains(source, "'system'") && !contains(source, "\"system\"")) return {};
  static constexpr std::string_view kOpen = "<|im_start|>system";
  static constexpr std::string_view kClose = "<|im_end|>";
  for (size_t at = source.find(kOpen); at != std::string_view::npos; at = source.find(kOpen, at + 1)) {
    std::string_view rest = source.substr(at + kOpen.size());
    if (rest.starts_with("\n")) {
      rest.remove_prefix(1);
    } else if (rest.starts_with("\\n")) {
      rest.remove_prefix(2);
    } else {
      continue;
    }
    const size_t end = rest.find(kClose);
    if (end == std::string_view::npos) continue;
    const std::string_view text = rest.substr(0, end);
    if (text.empty() || text.find_first_of("'\"{}") != std::string_view::npos) continue;
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {  // undo \n escapes of the Jinja literal
      if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == 'n') {
        out += '\n';
        ++i;
      } else {
        out += text[i];
      }
    }
    return out;
  }
  return {};
}

}  // namespace

Result<ChatTemplate> parse_chat_template(std::string_view name_or_source) {
  struct Named {
    std::string_view name;
    ChatFormat format;
  };
  static constexpr std::array<Named, 8> kNames = {{
      {"chatml", ChatFormat::kChatMl},
      {"smollm", ChatFormat::kChatMl},
      {"smollm2", ChatFormat::kChatMl},
      {"qwen2", ChatFormat::kChatMl},
      {"llama3", ChatFormat::kLlama3},
      {"llama-3", ChatFormat::kLlama3},
      {"llama2", ChatFormat::kLlama2},
      {"llama-2", ChatFormat::kLlama2},
  }};
  const std::string lower = to_lower(trim(name_or_source));
  for (const Named& n : kNames) {
    if (lower == n.name) return ChatTemplate{n.format, {}};
  }
  const std::string_view src = name_or_source;
  if (contains(src, "<|im_start|>")) {
    if (contains(src, "<|im_sep|>")) return Status::unsupported("chat template: Phi-4 style ChatML (<|im_sep|>) is not supported");
    return ChatTemplate{ChatFormat::kChatMl, default_system_message(src)};
  }
  if (contains(src, "<|start_header_id|>") && contains(src, "<|end_header_id|>")) {
    return ChatTemplate{ChatFormat::kLlama3, {}};
  }
  if (contains(src, "[INST]") && contains(src, "<<SYS>>")) return ChatTemplate{ChatFormat::kLlama2, {}};
  std::string shown(src.substr(0, 60));
  std::replace(shown.begin(), shown.end(), '\n', ' ');
  return Status::unsupported("chat template not recognised (supported: ChatML, Llama-3, Llama-2): '" + shown +
                             (src.size() > 60 ? "...'" : "'"));
}

std::string format_chat(const ChatTemplate& tmpl, const std::vector<ChatMessage>& msgs, bool add_generation_prompt) {
  return format_chat(tmpl, msgs, add_generation_prompt, nullptr);
}

std::string format_chat(const ChatTemplate& tmpl, const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                        std::vector<TextRange>* content_ranges) {
  std::string out;
  // Appends a message's text (role names included: they come from the request too), noting
  // where it lies.
  const auto text = [&](std::string_view s) -> std::string& {
    if (content_ranges != nullptr && !s.empty()) content_ranges->push_back(TextRange{out.size(), s.size()});
    return out.append(s);
  };
  switch (tmpl.format) {
    case ChatFormat::kChatMl: {
      const auto turn = [&](std::string_view role, std::string_view content) {
        out.append("<|im_start|>");
        text(role).append("\n");
        text(content).append("<|im_end|>\n");
      };
      if (!tmpl.default_system.empty() && (msgs.empty() || msgs.front().role != "system")) {
        turn("system", tmpl.default_system);
      }
      for (const ChatMessage& m : msgs) turn(m.role, m.content);
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    }
    case ChatFormat::kLlama3: {
      for (const ChatMessage& m : msgs) {
        out.append("<|start_header_id|>");
        text(m.role).append("<|end_header_id|>\n\n");
        text(trim(m.content)).append("<|eot_id|>");
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    }
    case ChatFormat::kLlama2: {
      // Meta's chat_completion: the system message goes into the first user turn; each
      // completed exchange ends with EOS and the next one starts with BOS.
      std::string system;
      bool first_turn = true;
      for (const ChatMessage& m : msgs) {
        const std::string_view content = trim(m.content);
        if (m.role == "system") {
          system = std::string(content);
          continue;
        }
        if (m.role == "assistant") {
          out.append(" ");
          text(content).append(" </s>");
          continue;
        }
        out += first_turn ? "[INST] " : "<s>[INST] ";
        if (!system.empty()) {
          out.append("<<SYS>>\n");
          text(system).append("\n<</SYS>>\n\n");
          system.clear();
        }
        text(content).append(" [/INST]");
        first_turn = false;
      }
      if (!system.empty()) {  // a system message with no user turn after it
        out.append(first_turn ? "[INST] " : "<s>[INST] ").append("<<SYS>>\n");
        text(system).append("\n<</SYS>>\n\n [/INST]");
      }
      break;  // the prompt ends with [/INST]: nothing to add for add_generation_prompt
    }
  }
  return out;
}

Result<std::string> apply_chat_template(std::string_view template_name_or_source,
                                        const std::vector<ChatMessage>& msgs, bool add_generation_prompt) {
  Result<ChatTemplate> tmpl = parse_chat_template(template_name_or_source);
  if (!tmpl) return tmpl.status();
  return format_chat(*tmpl, msgs, add_generation_prompt);
}

}  // namespace lutq::gen
