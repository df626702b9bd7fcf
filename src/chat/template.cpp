#include "chat/template.h"

#include "chat/ast.h"
#include "chat/eval.h"
#include "util/error.h"

namespace optiq::chat {

ChatTemplate::ChatTemplate(std::string source) : source_(std::move(source)), root_(parse_template(source_)) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& context, const RenderOptions& opts) const {
  if (!context.is_object()) throw Error(ErrorKind::InvalidArgument, "chat template: context must be a JSON object");
  Value ctx = Value::from_json(context);
  RenderLimits limits;
  limits.max_output_bytes = opts.max_output_bytes;
  limits.max_call_depth = opts.max_call_depth;
  limits.max_steps = opts.max_steps;
  RenderState st(ctx.dict_ref(), opts.now, limits);
  std::string out;
  st.out = &out;
  root_->exec(st);
  return out;
}

}  // namespace optiq::chat
