// Chat prompt formatting for the families lutq runs. No Jinja: the format is recognised from the
// template's name or from characteristic substrings of its source (GGUF tokenizer.chat_template)
// and written by hand, as llama.cpp's llm_chat_apply_template does.
//
// The result never starts with BOS: tokenize it with encode(prompt, /*add_special=*/true,
// /*parse_special=*/true) so that the tokenizer adds BOS where the model wants one and the
// markers (<|im_start|>, <|eot_id|>, ...) become their control tokens.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "gen/tokenizer.h"

namespace lutq::gen {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatFormat {
  // <|im_start|>role\ncontent<|im_end|>\n ...; generation prompt <|im_start|>assistant\n
  // (SmolLM2, Qwen2)
  kChatMl,
  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> ...; generation prompt
  // <|start_header_id|>assistant<|end_header_id|>\n\n (content trimmed, as the Llama-3 template)
  kLlama3,
  // [INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant </s><s>[INST] user [/INST]
  // (content trimmed, as Meta's reference chat_completion and the Llama-2 template)
  kLlama2,
};

struct ChatTemplate {
  ChatFormat format = ChatFormat::kChatMl;
  // ChatML templates that insert a system message when the conversation has none (SmolLM2:
  // "You are a helpful AI assistant named SmolLM, trained by Hugging Face"; Qwen2: "You are a
  // helpful assistant") carry its text here; empty for none.
  std::string default_system;
};

// name_or_source: a name ("chatml", "smollm", "qwen2", "llama3", "llama2", case-insensitive) or
// the Jinja source of a template. Errors (unsupported) for anything else.
Result<ChatTemplate> parse_chat_template(std::string_view name_or_source);

std::string format_chat(const ChatTemplate& tmpl, const std::vector<ChatMessage>& msgs, bool add_generation_prompt);
// The same, noting where the messages' own text (content and role) lies in the result: encode
// with Tokenizer::encode(prompt, true, ranges) so that a message that spells a marker such as
// "<|im_end|>" cannot end its turn (role injection): only the template's markers are tokens.
std::string format_chat(const ChatTemplate& tmpl, const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                        std::vector<TextRange>* content_ranges);

// parse_chat_template + format_chat.
Result<std::string> apply_chat_template(std::string_view template_name_or_source,
                                        const std::vector<ChatMessage>& msgs, bool add_generation_prompt);

}  // namespace lutq::gen
