// Syntax tree of a parsed template. Generic nodes (a kind plus operands) rather than a class per
// construct: the evaluator is one switch, and the tree is built once per template and then only
// read, so any number of threads may render the same tree.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "scheduler/chat/jinja_value.h"

namespace ite::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // literal
    kName,       // name
    kList,       // children
    kTuple,      // children
    kDict,       // children: key0, value0, key1, value1, ...
    kGetAttr,    // children[0].name
    kGetItem,    // children[0][children[1]]
    kSlice,      // children[0][a:b:c]: children[1..3] (nullptr when omitted)
    kCall,       // children[0](children[1..], kwargs)
    kFilter,     // children[0] | name(children[1..], kwargs)
    kTest,       // children[0] is [not] name(children[1..], kwargs); negated
    kUnary,      // name in {"-", "+", "not"} applied to children[0]
    kBinary,     // children[0] name children[1]; name in {+,-,*,/,//,%,**,~,and,or}
    kCompare,    // children[0] ops[0] children[1] ops[1] children[2] ... (chained)
    kCondition,  // children[1] if children[0] else children[2] (children[2] may be nullptr)
  };
  Kind kind;
  int line = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // conditions[i] -> bodies[i]; bodies.size() == conditions.size() + 1 if else
    kFor,       // for targets in expr [if filter]: bodies[0]; else: bodies[1]
    kSet,       // set targets = expr, or set targets[0].attr = expr (namespace)
    kSetBlock,  // set targets[0]: bodies[0] rendered
    kMacro,     // macro name(params = defaults): bodies[0]
    kBreak,
    kContinue,
    kScope,        // a transparent block ({% generation %}): bodies[0]
    kFilterBlock,  // {% filter name(args) %}: expr is a kFilter whose operand is empty
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;  // kFor: the `if` condition
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  std::vector<std::string> targets;
  std::string attr;  // kSet on a namespace attribute
  std::string name;  // kMacro
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // per param, nullptr when none
};

struct Program {
  Body body;
};

}  // namespace ite::jinja
