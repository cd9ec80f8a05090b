//! Agent ids, executables and destinations as small numbers, so that detector state is keyed
//! by copies of integers instead of strings (and looking one up allocates nothing).

use foldhash::HashMap;

/// An interned name.
pub type Sym = u32;

/// Names and their numbers; a name keeps its number for the life of the pipeline.
#[derive(Debug, Default)]
pub struct Interner {
    numbers: HashMap<Box<str>, Sym>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// The number of `name`, given one when it has none yet.
    pub fn get(&mut self, name: &str) -> Sym {
        if let Some(&sym) = self.numbers.get(name) {
            return sym;
        }
        let sym = Sym::try_from(self.names.len()).unwrap_or(Sym::MAX);
        self.names.push(name.into());
        self.numbers.insert(name.into(), sym);
        sym
    }

    /// The name of a number this interner gave.
    pub fn name(&self, sym: Sym) -> &str {
        usize::try_from(sym)
            .ok()
            .and_then(|i| self.names.get(i))
            .map_or("", |name| name)
    }
}
