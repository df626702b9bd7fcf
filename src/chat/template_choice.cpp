#include "chat/template_choice.h"

#include "util/mapped_file.h"

namespace optiq::chat {

const char* const kDefaultChatTemplate =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

std::string choose_chat_template(const std::string& model_template, const std::string& flag_value,
                                 bool use_default_template) {
  std::string t = model_template;
  if (!flag_value.empty()) t = file_exists(flag_value) ? read_text_file(flag_value) : flag_value;
  if (t.empty() && use_default_template) t = kDefaultChatTemplate;
  return t;
}

}  // namespace optiq::chat
