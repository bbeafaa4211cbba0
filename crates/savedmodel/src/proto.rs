//! Hand-written prost messages for the parts of TensorFlow's protos this crate reads.
//!
//! Field numbers follow TF 2.21 (`tensorflow/core/protobuf/{saved_model,meta_graph,
//! saved_object_graph,trackable_object_graph,tensor_bundle}.proto`,
//! `tensorflow/core/framework/{graph,function,node_def,tensor_shape,tensor_slice}.proto`).
//! Fields we do not need are left out: protobuf decoders skip unknown fields, so these
//! trimmed messages decode the same bytes. `oneof` members are declared as plain optional
//! fields, which is wire-compatible.

use std::collections::BTreeMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedModel {
    #[prost(int64, tag = "1")]
    pub saved_model_schema_version: i64,
    #[prost(message, repeated, tag = "2")]
    pub meta_graphs: Vec<MetaGraphDef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaGraphDef {
    #[prost(message, optional, tag = "1")]
    pub meta_info_def: Option<MetaInfoDef>,
    #[prost(message, optional, tag = "2")]
    pub graph_def: Option<GraphDef>,
    #[prost(btree_map = "string, message", tag = "4")]
    pub collection_def: BTreeMap<String, CollectionDef>,
    #[prost(btree_map = "string, message", tag = "5")]
    pub signature_def: BTreeMap<String, SignatureDef>,
    #[prost(message, repeated, tag = "6")]
    pub asset_file_def: Vec<AssetFileDef>,
    #[prost(message, optional, tag = "7")]
    pub object_graph_def: Option<SavedObjectGraph>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaInfoDef {
    #[prost(string, tag = "1")]
    pub meta_graph_version: String,
    /// Every OpDef the graph uses, with attributes equal to their default stripped from nodes.
    #[prost(message, optional, tag = "2")]
    pub stripped_op_list: Option<OpList>,
    #[prost(string, repeated, tag = "4")]
    pub tags: Vec<String>,
    #[prost(string, tag = "5")]
    pub tensorflow_version: String,
    #[prost(string, tag = "6")]
    pub tensorflow_git_version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphDef {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeDef>,
    #[prost(message, optional, tag = "2")]
    pub library: Option<FunctionDefLibrary>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub op: String,
    /// `node`, `node:idx` (graphs), `arg`, `node:out_arg:idx` (function bodies) or `^node`.
    #[prost(string, repeated, tag = "3")]
    pub input: Vec<String>,
    #[prost(string, tag = "4")]
    pub device: String,
    #[prost(btree_map = "string, message", tag = "5")]
    pub attr: BTreeMap<String, AttrValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionDefLibrary {
    #[prost(message, repeated, tag = "1")]
    pub function: Vec<FunctionDef>,
    #[prost(message, repeated, tag = "2")]
    pub gradient: Vec<GradientDef>,
    #[prost(message, repeated, tag = "3")]
    pub registered_gradients: Vec<RegisteredGradient>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GradientDef {
    #[prost(string, tag = "1")]
    pub function_name: String,
    #[prost(string, tag = "2")]
    pub gradient_func: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisteredGradient {
    #[prost(string, tag = "1")]
    pub gradient_func: String,
    #[prost(string, tag = "2")]
    pub registered_op_type: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionDef {
    #[prost(message, optional, tag = "1")]
    pub signature: Option<OpDef>,
    #[prost(message, repeated, tag = "3")]
    pub node_def: Vec<NodeDef>,
    /// Output argument name -> `node:out_arg:idx` (or an input argument name).
    #[prost(btree_map = "string, string", tag = "4")]
    pub ret: BTreeMap<String, String>,
    #[prost(btree_map = "string, message", tag = "5")]
    pub attr: BTreeMap<String, AttrValue>,
    /// Control output name -> node name (stateful ops that must run).
    #[prost(btree_map = "string, string", tag = "6")]
    pub control_ret: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpList {
    #[prost(message, repeated, tag = "1")]
    pub op: Vec<OpDef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub input_arg: Vec<ArgDef>,
    #[prost(message, repeated, tag = "3")]
    pub output_arg: Vec<ArgDef>,
    #[prost(message, repeated, tag = "4")]
    pub attr: Vec<AttrDef>,
    #[prost(bool, tag = "17")]
    pub is_stateful: bool,
    #[prost(string, repeated, tag = "20")]
    pub control_output: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ArgDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    #[prost(string, tag = "4")]
    pub type_attr: String,
    /// For a list of one type: the int attribute holding its length.
    #[prost(string, tag = "5")]
    pub number_attr: String,
    /// For a list of mixed types: the list(type) attribute (its length is the count).
    #[prost(string, tag = "6")]
    pub type_list_attr: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttrDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub r#type: String,
    #[prost(message, optional, tag = "3")]
    pub default_value: Option<AttrValue>,
}

/// `AttrValue`; the members of its `value` oneof as optional fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttrValue {
    #[prost(message, optional, tag = "1")]
    pub list: Option<AttrList>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub s: Option<Vec<u8>>,
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    #[prost(float, optional, tag = "4")]
    pub f: Option<f32>,
    #[prost(bool, optional, tag = "5")]
    pub b: Option<bool>,
    #[prost(int32, optional, tag = "6")]
    pub r#type: Option<i32>,
    #[prost(message, optional, tag = "7")]
    pub shape: Option<TensorShapeProto>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    #[prost(string, optional, tag = "9")]
    pub placeholder: Option<String>,
    #[prost(message, optional, tag = "10")]
    pub func: Option<NameAttrList>,
}

/// `AttrValue.ListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttrList {
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub s: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "3")]
    pub i: Vec<i64>,
    #[prost(float, repeated, tag = "4")]
    pub f: Vec<f32>,
    #[prost(bool, repeated, tag = "5")]
    pub b: Vec<bool>,
    #[prost(int32, repeated, tag = "6")]
    pub r#type: Vec<i32>,
    #[prost(message, repeated, tag = "7")]
    pub shape: Vec<TensorShapeProto>,
    #[prost(message, repeated, tag = "8")]
    pub tensor: Vec<TensorProto>,
    #[prost(message, repeated, tag = "9")]
    pub func: Vec<NameAttrList>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NameAttrList {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(btree_map = "string, message", tag = "2")]
    pub attr: BTreeMap<String, AttrValue>,
}

/// `TensorProto` (constants in graphs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    #[prost(int32, repeated, tag = "7")]
    pub int_val: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "10")]
    pub int64_val: Vec<i64>,
    #[prost(bool, repeated, tag = "11")]
    pub bool_val: Vec<bool>,
    #[prost(int32, repeated, tag = "13")]
    pub half_val: Vec<i32>,
    #[prost(uint32, repeated, tag = "16")]
    pub uint32_val: Vec<u32>,
    #[prost(uint64, repeated, tag = "17")]
    pub uint64_val: Vec<u64>,
}

/// `CollectionDef`; only the `any_list` member of its `kind` oneof is read
/// (TF1 `SavedModelBuilder` keeps `AssetFileDef`s under `saved_model_assets`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CollectionDef {
    #[prost(message, optional, tag = "5")]
    pub any_list: Option<AnyList>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyList {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SignatureDef {
    #[prost(btree_map = "string, message", tag = "1")]
    pub inputs: BTreeMap<String, TensorInfo>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub outputs: BTreeMap<String, TensorInfo>,
    #[prost(string, tag = "3")]
    pub method_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorInfo {
    /// Member `name` of the `encoding` oneof (sparse/composite encodings leave it empty).
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "2")]
    pub dtype: i32,
    #[prost(message, optional, tag = "3")]
    pub tensor_shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
    #[prost(string, tag = "2")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AssetFileDef {
    #[prost(message, optional, tag = "1")]
    pub tensor_info: Option<TensorInfo>,
    #[prost(string, tag = "2")]
    pub filename: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedObjectGraph {
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<SavedObject>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub concrete_functions: BTreeMap<String, SavedConcreteFunction>,
}

/// `SavedObject`; the members of its `kind` oneof as optional fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedObject {
    #[prost(message, repeated, tag = "1")]
    pub children: Vec<ObjectReference>,
    #[prost(message, optional, tag = "6")]
    pub function: Option<SavedFunction>,
    #[prost(message, optional, tag = "7")]
    pub variable: Option<SavedVariable>,
    #[prost(message, optional, tag = "8")]
    pub bare_concrete_function: Option<SavedBareConcreteFunction>,
    #[prost(message, optional, tag = "9")]
    pub constant: Option<SavedConstant>,
    #[prost(message, optional, tag = "10")]
    pub resource: Option<SavedResource>,
    #[prost(message, optional, tag = "5")]
    pub asset: Option<SavedAsset>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedFunction {
    #[prost(string, repeated, tag = "1")]
    pub concrete_functions: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedBareConcreteFunction {
    #[prost(string, tag = "1")]
    pub concrete_function_name: String,
    #[prost(string, repeated, tag = "2")]
    pub argument_keywords: Vec<String>,
    #[prost(int64, tag = "3")]
    pub allowed_positional_arguments: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedConcreteFunction {
    /// Object-graph node ids bound to the function's trailing (captured) inputs.
    #[prost(int32, repeated, tag = "2")]
    pub bound_inputs: Vec<i32>,
    #[prost(message, optional, tag = "3")]
    pub canonicalized_input_signature: Option<StructuredValue>,
    #[prost(message, optional, tag = "4")]
    pub output_signature: Option<StructuredValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedConstant {
    /// Name of the graph's Const node holding the value.
    #[prost(string, tag = "1")]
    pub operation: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedResource {
    #[prost(string, tag = "1")]
    pub device: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedAsset {
    #[prost(int32, tag = "1")]
    pub asset_file_def_index: i32,
}

/// `StructuredValue` (tensorflow/core/protobuf/struct.proto); members of its `kind` oneof
/// as optional fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StructuredValue {
    #[prost(message, optional, tag = "1")]
    pub none_value: Option<NoneValue>,
    #[prost(double, optional, tag = "11")]
    pub float64_value: Option<f64>,
    #[prost(sint64, optional, tag = "12")]
    pub int64_value: Option<i64>,
    #[prost(string, optional, tag = "13")]
    pub string_value: Option<String>,
    #[prost(bool, optional, tag = "14")]
    pub bool_value: Option<bool>,
    #[prost(message, optional, tag = "31")]
    pub tensor_shape_value: Option<TensorShapeProto>,
    #[prost(int32, optional, tag = "32")]
    pub tensor_dtype_value: Option<i32>,
    #[prost(message, optional, tag = "33")]
    pub tensor_spec_value: Option<TensorSpecProto>,
    #[prost(message, optional, tag = "51")]
    pub list_value: Option<StructList>,
    #[prost(message, optional, tag = "52")]
    pub tuple_value: Option<StructList>,
    #[prost(message, optional, tag = "53")]
    pub dict_value: Option<StructDict>,
    #[prost(message, optional, tag = "54")]
    pub named_tuple_value: Option<NamedTupleValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NoneValue {}

/// `ListValue` / `TupleValue` of struct.proto (same wire form).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StructList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<StructuredValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StructDict {
    #[prost(btree_map = "string, message", tag = "1")]
    pub fields: BTreeMap<String, StructuredValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedTupleValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PairValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PairValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<StructuredValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorSpecProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    pub dtype: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ObjectReference {
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    #[prost(string, tag = "2")]
    pub local_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SavedVariable {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    #[prost(bool, tag = "3")]
    pub trainable: bool,
    #[prost(string, tag = "6")]
    pub name: String,
    #[prost(string, tag = "7")]
    pub device: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TrackableObjectGraph {
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<TrackableObject>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TrackableObject {
    #[prost(message, repeated, tag = "1")]
    pub children: Vec<ObjectReference>,
    #[prost(message, repeated, tag = "2")]
    pub attributes: Vec<SerializedTensor>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SerializedTensor {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub full_name: String,
    #[prost(string, tag = "3")]
    pub checkpoint_key: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BundleHeaderProto {
    #[prost(int32, tag = "1")]
    pub num_shards: i32,
    /// 0 = little endian, 1 = big endian.
    #[prost(int32, tag = "2")]
    pub endianness: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BundleEntryProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    pub shard_id: i32,
    #[prost(int64, tag = "4")]
    pub offset: i64,
    #[prost(int64, tag = "5")]
    pub size: i64,
    #[prost(fixed32, tag = "6")]
    pub crc32c: u32,
    #[prost(message, repeated, tag = "7")]
    pub slices: Vec<TensorSliceProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorSliceProto {
    #[prost(message, repeated, tag = "1")]
    pub extent: Vec<Extent>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Extent {
    #[prost(int64, tag = "1")]
    pub start: i64,
    /// Member of the `has_length` oneof; absent = the whole dimension.
    #[prost(int64, optional, tag = "2")]
    pub length: Option<i64>,
}
