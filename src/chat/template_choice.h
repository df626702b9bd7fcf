#pragma once
// Which chat template a process renders with: the --chat-template flag (a file, or the template text
// itself) over the model's own template; with --use-default-chat-template, a plain ChatML template when
// there is neither. `optiq serve` and `optiq template` pick it the same way.
#include <string>

namespace optiq::chat {

// The ChatML template used by --use-default-chat-template.
extern const char* const kDefaultChatTemplate;

// "" when there is no template to use. Throws Error when the flag names a file that cannot be read.
std::string choose_chat_template(const std::string& model_template, const std::string& flag_value,
                                 bool use_default_template);

}  // namespace optiq::chat
