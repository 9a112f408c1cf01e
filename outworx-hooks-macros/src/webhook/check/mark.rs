//! `require_processed`: does the handler's body mark the event (or hand its `Track` on)?

use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Expr, Ident, Pat, Token};

/// Whether `block` calls `binding.processed(..)`/`.failed(..)` or hands `binding` on.
pub(super) fn marks_or_hands_on(binding: &Ident, block: &syn::Block) -> bool {
    let mut scan = Scan {
        binding,
        aliases: Vec::new(),
        marked: false,
        handed: false,
    };
    scan.visit_block(block);
    scan.marked || scan.handed
}

/// Finds `binding.processed(..)` / `.failed(..)` calls, or the binding handed on, following
/// simple `let` aliases (`let t = &track;`, `let t = track.clone();`): an alias that is
/// marked or handed on counts, one that is only bound does not.
struct Scan<'a> {
    binding: &'a Ident,
    aliases: Vec<Ident>,
    marked: bool,
    handed: bool,
}

const MARKS: [&str; 4] = ["processed", "processed_with", "failed", "failed_with"];

impl Scan<'_> {
    fn is_name(&self, path: &syn::ExprPath) -> bool {
        path.qself.is_none()
            && (path.path.is_ident(self.binding)
                || self.aliases.iter().any(|a| path.path.is_ident(a)))
    }

    fn is_binding(&self, e: &Expr) -> bool {
        match e {
            Expr::Path(p) => self.is_name(p),
            Expr::Paren(p) => self.is_binding(&p.expr),
            Expr::Reference(r) => self.is_binding(&r.expr),
            _ => false,
        }
    }

    /// Whether `e` is the binding itself, a reference to it, or a clone of it.
    fn is_alias_of_binding(&self, e: &Expr) -> bool {
        match e {
            Expr::MethodCall(call) => {
                call.method == "clone" && call.args.is_empty() && self.is_binding(&call.receiver)
            }
            other => self.is_binding(other),
        }
    }
}

impl<'ast> Visit<'ast> for Scan<'_> {
    fn visit_stmt(&mut self, stmt: &'ast syn::Stmt) {
        // `track;`, `&track;`: evaluated and dropped on the spot, handed to nothing.
        if let syn::Stmt::Expr(e, Some(_)) = stmt
            && self.is_alias_of_binding(e)
        {
            return;
        }
        syn::visit::visit_stmt(self, stmt);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        // `drop(track)`, `mem::forget(track)` discard it: handed to nothing that could mark.
        if let Expr::Path(f) = &*call.func
            && f.path
                .segments
                .last()
                .is_some_and(|s| s.ident == "drop" || s.ident == "forget")
            && call.args.len() == 1
            && call.args.iter().all(|a| self.is_alias_of_binding(a))
        {
            return;
        }
        syn::visit::visit_expr_call(self, call);
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        let pat = match &local.pat {
            Pat::Type(t) => &*t.pat,
            other => other,
        };
        // `let _ = &track;` binds nothing: the value is dropped at once (a misuse that
        // silenced the check).
        if let (Pat::Wild(_), Some(init)) = (pat, &local.init)
            && init.diverge.is_none()
            && self.is_alias_of_binding(&init.expr)
        {
            return;
        }
        if let (Pat::Ident(p), Some(init)) = (pat, &local.init)
            && p.subpat.is_none()
            && init.diverge.is_none()
            && self.is_alias_of_binding(&init.expr)
        {
            // Only bound so far: it counts once it is marked or handed on.
            self.aliases.push(p.ident.clone());
            return;
        }
        syn::visit::visit_local(self, local);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if self.is_binding(&call.receiver) {
            let method = call.method.to_string();
            if MARKS.contains(&method.as_str()) {
                self.marked = true;
            } else if method == "clone" {
                // A clone goes somewhere else: a task, a struct, a function.
                self.handed = true;
            }
            for arg in &call.args {
                self.visit_expr(arg);
            }
            return;
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        // Any other use of the binding moves or lends it on: an argument, a field, a return.
        if self.is_name(p) {
            self.handed = true;
        }
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Macro arguments are tokens; read them as expressions where they are.
        if let Ok(exprs) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for e in &exprs {
                self.visit_expr(e);
            }
        }
    }
}
