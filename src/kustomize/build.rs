//! The build of one kustomization directory: resources, generators,
//! components, then transformers, in kustomize's order; and at the top
//! level the name hashes, name references and output order.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config::Config;
use super::generate::{self, content_hash};
use super::kustomization::{is_remote, Kustomization};
use super::overrides::FluxOverrides;
use super::resource::{Origin, Resource};
use super::yaml::Step;
use super::{
    absorb, nameref, order, output, patch, plugins, replace, schema, transform, vars, yaml, Error,
};

/// Per-build state: the kustomizations being built, outermost first (to
/// detect cycles), and whether a kustomization already chose the OpenAPI
/// schema (the first one to name one wins, as in kustomize).
#[derive(Default)]
pub struct Stack {
    dirs: Vec<PathBuf>,
    schema_chosen: bool,
}

/// Takes a custom schema out of force when the build ends, however it ends.
struct SchemaGuard;

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        schema::set_custom(None);
    }
}

/// Builds the kustomization in `dir` with `overrides` merged into it.
pub fn build_top(dir: &Path, overrides: &FluxOverrides) -> Result<Vec<Resource>, Error> {
    let dir = canonical(dir, dir, "build")?;
    let _schema = SchemaGuard;
    let mut stack = Stack::default();
    let mut config = Config::default();
    let (file, mut loaded) = Kustomization::load(&dir)?;
    overrides.merge_into(&mut loaded);
    let (mut resources, kustomization, file) = accumulate_loaded(
        &dir,
        (file, loaded),
        &mut stack,
        Vec::new(),
        false,
        &mut config,
    )?;
    finish(&mut resources, &file, &config)?;
    resources.retain(|r| !output::is_local_config(r));
    output::drop_empty_annotations(&mut resources);
    output::build_metadata(&mut resources, &kustomization.build_metadata, &dir);
    order::sort(&mut resources, kustomization.sort_options.as_ref())
        .map_err(|m| Error::field(&file, "sortOptions", m))?;
    Ok(resources)
}

/// Builds manifest files and kustomization directories as if listed under
/// `resources` of a kustomization in `dir` (Flux's generated one), with
/// `overrides` as that kustomization's other fields.
pub fn build_entries(
    dir: &Path,
    entries: &[PathBuf],
    overrides: &FluxOverrides,
) -> Result<Vec<Resource>, Error> {
    let origin = dir.join("kustomization.yaml");
    let _schema = SchemaGuard;
    let mut stack = Stack {
        dirs: vec![dir.to_path_buf()],
        schema_chosen: false,
    };
    let mut config = Config::default();
    let mut resources = Vec::new();
    for path in entries {
        let loaded = if path.is_dir() {
            accumulate(path, &mut stack, Vec::new(), false, &mut config)?.0
        } else {
            load_file(path, &origin)?
        };
        // There is no kustomization.yaml to blame: the entry repeats it.
        for r in loaded {
            add(&mut resources, r, path, "resources")?;
        }
    }
    if !overrides.is_empty() {
        let mut generated = Kustomization::default();
        overrides.merge_into(&mut generated);
        resources = components_and_transformers(
            dir,
            &origin,
            &generated,
            &mut stack,
            resources,
            &mut config,
        )?;
    }
    finish(&mut resources, &origin, &config)?;
    output::drop_empty_annotations(&mut resources);
    order::sort(&mut resources, None).map_err(|m| Error::field(&origin, "sortOptions", m))?;
    Ok(resources)
}

/// The steps kustomize runs once, on the outermost result.
fn finish(resources: &mut [Resource], file: &Path, config: &Config) -> Result<(), Error> {
    for r in resources.iter_mut().filter(|r| r.needs_hash) {
        let name = format!("{}-{}", r.name(), content_hash(&r.value));
        r.remember_id();
        r.set_name(&name);
    }
    nameref::fix(resources, &config.name_references)
        .map_err(|m| Error::field(file, "resources", m))?;
    vars::resolve(resources, &config.vars, &config.var_references)
        .map_err(|m| Error::field(file, "vars", m))
}

fn canonical(path: &Path, file: &Path, field: &str) -> Result<PathBuf, Error> {
    path.canonicalize().map_err(|source| Error::Read {
        file: file.to_path_buf(),
        field: field.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// `config` gathers the field specs of this kustomization and of all it
/// includes.
fn accumulate(
    dir: &Path,
    stack: &mut Stack,
    resources: Vec<Resource>,
    component: bool,
    config: &mut Config,
) -> Result<(Vec<Resource>, Kustomization, PathBuf), Error> {
    let loaded = Kustomization::load(dir)?;
    accumulate_loaded(dir, loaded, stack, resources, component, config)
}

/// [`accumulate`] of a kustomization file already read: `(file, k)`.
fn accumulate_loaded(
    dir: &Path,
    (file, k): (PathBuf, Kustomization),
    stack: &mut Stack,
    mut resources: Vec<Resource>,
    component: bool,
    config: &mut Config,
) -> Result<(Vec<Resource>, Kustomization, PathBuf), Error> {
    check_kind(&file, &k, component, stack)?;
    choose_schema(dir, &file, &k, stack)?;
    stack.dirs.push(dir.to_path_buf());
    let entries: Vec<&String> = k.bases.iter().chain(&k.resources).collect();
    for entry in entries {
        for r in load_entry(dir, entry, &file, stack, config)? {
            add(&mut resources, r, &file, "resources")?;
        }
    }
    for entry in &k.configurations {
        config.load(dir, entry, &file)?;
    }
    for entry in &k.crds {
        super::crds::load(config, dir, entry, &file)?;
    }
    run_generators(&mut resources, &k, dir, &file)?;
    let generator_configs = load_plugin_configs(dir, &k.generators, &file, "generators", stack)?;
    for r in plugins::generate(&generator_configs, dir, &file)? {
        absorb::absorb(&mut resources, r, &file, "generators")?;
    }
    let mut resources = components_and_transformers(dir, &file, &k, stack, resources, config)?;
    let transformer_configs =
        load_plugin_configs(dir, &k.transformers, &file, "transformers", stack)?;
    plugins::transform(&mut resources, &transformer_configs, dir, &file, config)?;
    vars::declare(&mut resources, &k.vars, &mut config.vars)
        .map_err(|m| Error::field(&file, "vars", m))?;
    stack.dirs.pop();
    Ok((resources, k, file))
}

/// The components of `k`, then its built-in transformers, over `resources`.
fn components_and_transformers(
    dir: &Path,
    file: &Path,
    k: &Kustomization,
    stack: &mut Stack,
    mut resources: Vec<Resource>,
    config: &mut Config,
) -> Result<Vec<Resource>, Error> {
    for entry in &k.components {
        let path = local_path(dir, entry, file, "components")?;
        check_cycle(&path, stack, file, "components")?;
        resources = accumulate(&path, stack, resources, true, config)?.0;
    }
    run_transformers(&mut resources, k, dir, file, config)?;
    Ok(resources)
}

/// `openapi`: the builtin schema (`version: v1.21.2`, kustomize's only
/// one) or a custom one (`path`) for strategic merge patches.
fn choose_schema(
    dir: &Path,
    file: &Path,
    k: &Kustomization,
    stack: &mut Stack,
) -> Result<(), Error> {
    let Some(openapi) = k.openapi.as_ref().filter(|o| !o.is_empty()) else {
        return Ok(());
    };
    if stack.schema_chosen {
        return Ok(());
    }
    stack.schema_chosen = true;
    match (openapi.get("path"), openapi.get("version")) {
        (Some(_), Some(_)) => Err(Error::field(
            file,
            "openapi",
            "builtin version and custom schema provided, cannot use both",
        )),
        (None, Some(version)) if version == "v1.21.2" => Ok(()),
        (None, Some(version)) => Err(Error::field(
            file,
            "openapi",
            format!("the specified OpenAPI version {version} is not built in"),
        )),
        (Some(path), None) => {
            let full = dir.join(path);
            check_within(dir, &full, file, "openapi")?;
            let text = std::fs::read_to_string(&full).map_err(|source| Error::Read {
                file: file.to_path_buf(),
                field: "openapi".into(),
                path: full.clone(),
                source,
            })?;
            let doc = yaml::parse_one(&full, &text)?;
            schema::set_custom(Some(schema::parse_openapi(&doc)));
            Ok(())
        }
        (None, None) => Err(Error::field(
            file,
            "openapi",
            "expected 'path' or 'version'",
        )),
    }
}

/// Plugin configurations: inline YAML, a file, or a kustomization
/// directory whose output is the configurations.
fn load_plugin_configs(
    dir: &Path,
    entries: &[String],
    file: &Path,
    field: &str,
    stack: &mut Stack,
) -> Result<Vec<(Value, PathBuf)>, Error> {
    let mut configs = Vec::new();
    for entry in entries {
        if entry.contains('\n') {
            let docs = yaml::parse_documents(file, entry)?;
            configs.extend(docs.into_iter().map(|d| (d, file.to_path_buf())));
            continue;
        }
        let path = local_path(dir, entry, file, field)?;
        if path.is_dir() {
            check_cycle(&path, stack, file, field)?;
            let built = accumulate(&path, stack, Vec::new(), false, &mut Config::default())?.0;
            configs.extend(built.into_iter().map(|r| {
                let source = match &r.origin {
                    Some(Origin::File(f)) => f.clone(),
                    _ => path.clone(),
                };
                (r.value, source)
            }));
        } else {
            check_within(dir, &path, file, field)?;
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
                file: file.to_path_buf(),
                field: field.into(),
                path: path.clone(),
                source,
            })?;
            let docs = yaml::parse_documents(&path, &text)?;
            configs.extend(docs.into_iter().map(|d| (d, path.clone())));
        }
    }
    Ok(configs)
}

fn check_kind(file: &Path, k: &Kustomization, component: bool, stack: &Stack) -> Result<(), Error> {
    let kind = k.kind.as_deref().unwrap_or("Kustomization");
    let api_version = k.api_version.as_deref().unwrap_or("");
    let expected = if kind == "Component" {
        "kustomize.config.k8s.io/v1alpha1"
    } else {
        "kustomize.config.k8s.io/v1beta1"
    };
    if !api_version.is_empty() && api_version != expected {
        return Err(Error::field(
            file,
            "apiVersion",
            format!("apiVersion for {kind} should be {expected}"),
        ));
    }
    match (component, kind) {
        (true, "Component") | (false, "Kustomization") => Ok(()),
        (false, "Component") if stack.dirs.is_empty() => Ok(()),
        (true, other) => Err(Error::field(
            file,
            "kind",
            format!("expected kind 'Component' for a component, got '{other}'"),
        )),
        (false, other) => Err(Error::field(
            file,
            "kind",
            format!("expected kind 'Kustomization', got '{other}'"),
        )),
    }
}

fn local_path(dir: &Path, entry: &str, file: &Path, field: &str) -> Result<PathBuf, Error> {
    if is_remote(entry) {
        return Err(Error::Unsupported {
            file: file.to_path_buf(),
            field: field.to_string(),
            reason: format!("remote resource '{entry}': kedge builds offline"),
        });
    }
    canonical(&dir.join(entry), file, field)
}

/// Like kustomize's default load restriction: files (not directories)
/// must be in or below the kustomization's directory.
pub fn check_within(dir: &Path, path: &Path, file: &Path, field: &str) -> Result<(), Error> {
    let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let target = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if target.starts_with(&root) {
        return Ok(());
    }
    Err(Error::field(
        file,
        field,
        format!(
            "security: file '{}' is not in or below '{}'",
            target.display(),
            root.display()
        ),
    ))
}

fn check_cycle(path: &Path, stack: &Stack, file: &Path, field: &str) -> Result<(), Error> {
    if stack.dirs.iter().any(|p| p == path) {
        return Err(Error::Cycle {
            file: file.to_path_buf(),
            field: field.to_string(),
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn load_entry(
    dir: &Path,
    entry: &str,
    file: &Path,
    stack: &mut Stack,
    config: &mut Config,
) -> Result<Vec<Resource>, Error> {
    let path = local_path(dir, entry, file, "resources")?;
    if path.is_dir() {
        check_cycle(&path, stack, file, "resources")?;
        // A base is built with its own configuration, which then also
        // applies to the kustomizations that include it.
        let mut own = Config::default();
        let built = accumulate(&path, stack, Vec::new(), false, &mut own)?.0;
        config
            .merge(&own)
            .map_err(|m| Error::field(file, "vars", m))?;
        return Ok(built);
    }
    check_within(dir, &path, file, "resources")?;
    load_file(&path, file)
}

/// Reads the objects of a manifest file; `List` objects are expanded.
pub fn load_file(path: &Path, file: &Path) -> Result<Vec<Resource>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        file: file.to_path_buf(),
        field: "resources".into(),
        path: path.to_path_buf(),
        source,
    })?;
    let mut resources = Vec::new();
    for doc in yaml::parse_manifests(path, &text)? {
        expand(doc.value, doc.empty_nulls, path, &mut resources)?;
    }
    let origin = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    for r in &mut resources {
        r.origin = Some(Origin::File(origin.clone()));
    }
    Ok(resources)
}

fn expand(
    doc: Value,
    empty_nulls: Vec<Vec<Step>>,
    path: &Path,
    out: &mut Vec<Resource>,
) -> Result<(), Error> {
    let Value::Object(map) = doc else {
        return Err(Error::Yaml {
            file: path.to_path_buf(),
            line: None,
            message: "a document is not an object".into(),
        });
    };
    let is_list = map
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && map.get("items").is_some_and(Value::is_array);
    if is_list {
        if let Some(Value::Array(items)) = map.get("items") {
            for (i, item) in items.iter().enumerate() {
                let prefix = [Step::Key("items".into()), Step::Index(i)];
                let inside = empty_nulls
                    .iter()
                    .filter_map(|p| p.strip_prefix(&prefix[..]).map(<[Step]>::to_vec))
                    .collect();
                expand(item.clone(), inside, path, out)?;
            }
        }
        return Ok(());
    }
    if map
        .get("kind")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Error::Yaml {
            file: path.to_path_buf(),
            line: None,
            message: "missing kind in object".into(),
        });
    }
    let mut value = Value::Object(map);
    stringify_annotations(&mut value);
    let mut resource = Resource::new(value);
    resource.empty_nulls = empty_nulls;
    out.push(resource);
    Ok(())
}

/// kustomize reads annotations as strings and writes them back, so
/// `port: 8080` comes out as `port: "8080"`.
fn stringify_annotations(value: &mut Value) {
    if let Some(Value::Object(annotations)) = value.pointer_mut("/metadata/annotations") {
        for v in annotations.values_mut() {
            let text = match &*v {
                Value::String(_) => continue,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            *v = Value::String(text);
        }
    }
}

fn add(resources: &mut Vec<Resource>, r: Resource, file: &Path, field: &str) -> Result<(), Error> {
    let id = r.id();
    if resources
        .iter()
        .any(|existing| existing.id().same_object(&id))
    {
        return Err(Error::DuplicateId {
            file: file.to_path_buf(),
            field: field.to_string(),
            id: id.to_string(),
        });
    }
    resources.push(r);
    Ok(())
}

fn run_generators(
    resources: &mut Vec<Resource>,
    k: &Kustomization,
    dir: &Path,
    file: &Path,
) -> Result<(), Error> {
    let global = k.generator_options.as_ref();
    let config_maps = k
        .config_map_generator
        .iter()
        .map(|a| (generate::Kind::ConfigMap, a));
    let secrets = k
        .secret_generator
        .iter()
        .map(|a| (generate::Kind::Secret, a));
    for (kind, args) in config_maps.chain(secrets) {
        let field = match kind {
            generate::Kind::ConfigMap => "configMapGenerator",
            generate::Kind::Secret => "secretGenerator",
        };
        let r = generate::generate(kind, args, global, dir, file)?;
        absorb::absorb(resources, r, file, field)?;
    }
    Ok(())
}

fn run_transformers(
    resources: &mut Vec<Resource>,
    k: &Kustomization,
    dir: &Path,
    file: &Path,
    config: &Config,
) -> Result<(), Error> {
    // Each built-in transformer is noted on the objects it ran over, for
    // `buildMetadata: [transformerAnnotations]`.
    let record = |resources: &mut Vec<Resource>, kind: &str, times: usize| {
        let origin = Origin::Generated {
            file: file.to_path_buf(),
            kind: kind.into(),
            name: None,
            namespace: None,
        };
        for r in resources.iter_mut() {
            r.transformations
                .extend(std::iter::repeat_n(origin.clone(), times));
        }
    };
    patch::strategic_merge(resources, &k.patches_strategic_merge, dir, file)?;
    record(
        resources,
        "PatchStrategicMergeTransformer",
        usize::from(!k.patches_strategic_merge.is_empty()),
    );
    patch::patches(resources, &k.patches, dir, file, "patches")?;
    record(resources, "PatchTransformer", k.patches.len());
    if let Some(ns) = k.namespace.as_deref().filter(|n| !n.is_empty()) {
        transform::namespace(resources, ns, &config.namespace);
        record(resources, "NamespaceTransformer", 1);
    }
    if let Some(prefix) = k.name_prefix.as_deref().filter(|p| !p.is_empty()) {
        transform::prefix(
            resources,
            prefix,
            &config.name_prefix,
            &config.name_prefix_names,
        );
        record(resources, "PrefixTransformer", 1);
    }
    if let Some(suffix) = k.name_suffix.as_deref().filter(|s| !s.is_empty()) {
        transform::suffix(
            resources,
            suffix,
            &config.name_suffix,
            &config.name_suffix_names,
        );
        record(resources, "SuffixTransformer", 1);
    }
    transform::labels(resources, &k.common_labels, &k.labels, config, file)?;
    record(
        resources,
        "LabelTransformer",
        usize::from(!k.common_labels.is_empty()) + k.labels.len(),
    );
    transform::annotations(resources, &k.common_annotations, config, file)?;
    record(
        resources,
        "AnnotationsTransformer",
        usize::from(!k.common_annotations.is_empty()),
    );
    patch::patches(resources, &k.patches_json6902, dir, file, "patchesJson6902")?;
    record(
        resources,
        "PatchJson6902Transformer",
        k.patches_json6902.len(),
    );
    transform::replicas(resources, &k.replicas, config);
    record(resources, "ReplicaCountTransformer", k.replicas.len());
    transform::images(resources, &k.images, config);
    record(resources, "ImageTagTransformer", k.images.len());
    replace::replacements(resources, &k.replacements, dir, file)?;
    record(
        resources,
        "ReplacementTransformer",
        usize::from(!k.replacements.is_empty()),
    );
    Ok(())
}
