//! Bindings of the `partitioner-plugin` world of `wit/plugin.wit`, re-exported by `rill-plugin-sdk` as
//! `bindings::partitioner`. Plugin authors use the SDK, not this crate.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "partitioner-plugin",
    pub_export_macro: true,
    export_macro_name: "export_partitioner",
    default_bindings_module: "rill_plugin_sdk::bindings::partitioner",
});
