//! Handler lists: add returns an id, remove by id, call every handler without letting one that
//! throws stop the others.

use std::cell::{Cell, RefCell};

use js_sys::Function;
use wasm_bindgen::JsValue;

/// The handlers of one kind.
#[derive(Default)]
pub(crate) struct Listeners {
    list: RefCell<Vec<(u32, Function)>>,
    next: Cell<u32>,
}

impl Listeners {
    /// Adds `f`; answers its id.
    pub(crate) fn add(&self, f: Function) -> u32 {
        let id = self.next.get().wrapping_add(1);
        self.next.set(id);
        self.list.borrow_mut().push((id, f));
        id
    }

    /// Removes the handler `id` (nothing if it is gone).
    pub(crate) fn remove(&self, id: u32) {
        self.list.borrow_mut().retain(|(i, _)| *i != id);
    }

    /// Removes every handler.
    pub(crate) fn clear(&self) {
        self.list.borrow_mut().clear();
    }

    /// Whether there is no handler.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.borrow().is_empty()
    }

    /// Calls every handler with `args`; each error a handler throws goes to `on_error`. The list
    /// is copied first, so a handler may add or remove handlers.
    pub(crate) fn call(&self, args: &[JsValue], mut on_error: impl FnMut(JsValue)) {
        let handlers: Vec<Function> = self.list.borrow().iter().map(|(_, f)| f.clone()).collect();
        for f in handlers {
            let result = match args {
                [] => f.call0(&JsValue::UNDEFINED),
                [a] => f.call1(&JsValue::UNDEFINED, a),
                [a, b, ..] => f.call2(&JsValue::UNDEFINED, a, b),
            };
            if let Err(e) = result {
                on_error(e);
            }
        }
    }
}
