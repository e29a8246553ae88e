//! Bindings of the `transform-plugin` world of `wit/plugin.wit`, re-exported by `rill-plugin-sdk` as
//! `bindings::transform`. Plugin authors use the SDK, not this crate.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "transform-plugin",
    pub_export_macro: true,
    export_macro_name: "export_transform",
    default_bindings_module: "rill_plugin_sdk::bindings::transform",
});
