prelude
/-! Mini-world prelude. -/
universe u v

axiom lcErased : Type
axiom lcAny : Type

inductive Bool : Type where
  | false : Bool
  | true : Bool

set_option linter.unusedVariables false in
@[reducible] def optParam (α : Sort u) (default : α) : Sort u := α

axiom sorryAx (α : Sort u) (synthetic : optParam Bool Bool.false) : α

-- Infrastructure Lean's elaborator needs to build `sorry` terms: error recovery and `sorry` create
-- "labeled sorries" `sorryAx (Lean.Name → α) ...` (Lean.Meta.mkLabeledSorry). Without `Lean.Name` in
-- the environment mkLabeledSorry throws `abortCommand` (shown as "internal exception #3") and the
-- declaration is dropped. With these (Init's names; String is only a stand-in), `sorry` is
-- reported normally ("declaration uses `sorry`") and shows up in `#print axioms` as `sorryAx`.
-- genCtorIdx off: `T.ctorIdx` would need `cond` and `Nat.decEq`.
set_option bootstrap.inductiveCheckResultingUniverse false in
inductive PUnit : Sort u where
  | unit : PUnit
abbrev Unit : Type := PUnit
@[match_pattern] abbrev Unit.unit : Unit := PUnit.unit
def Function.const {α : Sort u} (β : Sort v) (a : α) : β → α := fun _ => a
set_option genCtorIdx false in
inductive Nat where
  | zero : Nat
  | succ (n : Nat) : Nat
class OfNat (α : Type u) (_ : Nat) where
  ofNat : α
instance instOfNatNat (n : Nat) : OfNat Nat n where
  ofNat := n
structure String where
  data : Nat
set_option genCtorIdx false in
inductive Lean.Name where
  | anonymous : Lean.Name
  | str (pre : Lean.Name) (str : String)
  | num (pre : Lean.Name) (i : Nat)

inductive True : Prop where
  | intro : True

inductive False : Prop

def Not (a : Prop) : Prop := a → False

structure And (a b : Prop) : Prop where
  intro ::
  left : a
  right : b

inductive Or (a b : Prop) : Prop where
  | inl (h : a) : Or a b
  | inr (h : b) : Or a b

structure Iff (a b : Prop) : Prop where
  intro ::
  mp : a → b
  mpr : b → a

inductive Exists {α : Sort u} (p : α → Prop) : Prop where
  | intro (w : α) (h : p w) : Exists p

def id {α : Sort u} (a : α) : α := a
theorem trivial : True := True.intro

noncomputable def False.elim {C : Sort u} (h : False) : C := False.rec (fun _ => C) h
noncomputable def absurd {a : Prop} {b : Sort v} (h₁ : a) (h₂ : Not a) : b := (h₂ h₁).elim

theorem Or.elim {a b c : Prop} (h : Or a b) (left : a → c) (right : b → c) : c :=
  Or.rec left right h

theorem Exists.elim {α : Sort u} {p : α → Prop} {b : Prop}
    (h₁ : Exists (fun x => p x)) (h₂ : ∀ (a : α), p a → b) : b :=
  Exists.rec h₂ h₁

theorem And.symm {a b : Prop} : And a b → And b a := fun h => ⟨h.2, h.1⟩
theorem Or.symm {a b : Prop} : Or a b → Or b a := fun h => h.elim Or.inr Or.inl
theorem Iff.refl (a : Prop) : Iff a a := ⟨fun h => h, fun h => h⟩
theorem Iff.symm {a b : Prop} (h : Iff a b) : Iff b a := ⟨h.mpr, h.mp⟩
theorem mt {a b : Prop} (h₁ : a → b) (h₂ : Not b) : Not a := fun ha => h₂ (h₁ ha)
noncomputable def Not.elim {a : Prop} {α : Sort u} (H1 : Not a) (H2 : a) : α := absurd H2 H1

