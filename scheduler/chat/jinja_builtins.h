// What templates can call: filters (`x | trim`), tests (`x is defined`), methods of str/dict/list
// values (`s.startswith('a')`), attribute/item lookup with jinja2's sandbox rules, and the global
// functions transformers' chat-template environment defines.
#pragma once

#include <string_view>

#include "common/status.h"
#include "scheduler/chat/jinja_value.h"

namespace ite::jinja {

StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, const CallArgs& args);
StatusOr<bool> ApplyTest(std::string_view name, const Value& input, const CallArgs& args);

// Names jinja2 knows (a superset of what ApplyFilter/ApplyTest implement: jinja2 rejects unknown
// names when compiling, so the parser checks against the same list).
bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

// obj.name: a method of str/dict/list bound to obj, a dict key or namespace attribute, else
// Undefined. obj must not be Undefined (the caller raises jinja2's UndefinedError first).
Value GetAttr(const Value& obj, std::string_view name);
// obj[key]: index/key lookup, falling back to GetAttr for string keys (jinja2 getitem).
StatusOr<Value> GetItem(const Value& obj, const Value& key);
// obj[start:stop:step] for lists and strings (nullptr = omitted bound).
StatusOr<Value> GetSlice(const Value& obj, const Value* start, const Value* stop,
                         const Value* step);

// range, dict, namespace, raise_exception, strftime_now.
Value::Dict GlobalFunctions();

// Python's iteration of a value (list items, dict keys, string characters; Undefined is
// empty); TypeError for None and numbers.
StatusOr<Value::List> Iterate(const Value& v);

// Reads a builtin's arguments by position or keyword, and rejects unknown ones.
class ArgReader {
 public:
  ArgReader(const CallArgs& args, std::string_view fn,
            std::initializer_list<std::string_view> names)
      : args_(args), fn_(fn), names_(names) {}
  const Value* Get(size_t i) const;  // nullptr if not passed
  Status Check() const;              // too many positional or unknown keyword arguments
  std::string_view fn() const { return fn_; }

 private:
  const CallArgs& args_;
  std::string_view fn_;
  std::vector<std::string_view> names_;
};

// Helpers shared by the builtin files.
StatusOr<int64_t> ToInt(const Value& v, std::string_view what);
std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::vector<std::string> PySplitLines(std::string_view s);
StatusOr<Value> CallStrMethod(const std::string& s, std::string_view name, const CallArgs& args);

}  // namespace ite::jinja
