// CTC prefix beam search with a KenLM word model and a closed dictionary, with the rules and the arithmetic of
// DeepSpeech 0.9.3's native client, so that a model decoded here and by libdeepspeech.so gives the same transcript.
//
// Credit (see NOTICE): the algorithm is that of DeepSpeech's decoder (native_client/ctcdecode, Mozilla Public
// License 2.0), which came from parlance/ctcdecode (MIT) and, before it, PaddlePaddle DeepSpeech's decoder (Apache
// License 2.0); this file follows it step for step, with no code taken from them. This project's own: the code, the
// dictionary as a trie over labels instead of an OpenFST automaton, the KenLM word indices cached per dictionary
// state, and the C interface. KenLM (LGPL 2.1 or later) is built from its source distribution and linked, not
// included.
//
// What "the same rules" means (tests/test_decoder_matches_deepspeech.py checks them against libdeepspeech.so):
// * frames are skipped until the first one whose blank probability is below 0.999;
// * characters are tried in label order (the best CUTOFF_TOP_N by probability when the alphabet is larger), each
//   against the beam's prefixes from best to worst, stopping early once the beam is full and a prefix cannot reach
//   the last one's score;
// * a prefix may only spell the beginning of a dictionary word; a space may only close a complete one, and a word
//   is scored when its space is appended: alpha * ln P(word | up to ORDER-1 words before it) + beta, P from KenLM
//   (log10 converted with DeepSpeech's float constant), -1000 when any of those words is out of the vocabulary,
//   the sentence start as context only while the prefix holds fewer than ORDER words;
// * after every frame only the best BEAM_WIDTH prefixes stay;
// * at the end the last word of a prefix that does not end with a space is scored the same way, and the best
//   prefix wins, ties going to the smaller last label.
// Scores are floats and language-model terms doubles exactly where DeepSpeech has them, and the beam is kept in
// the same order (prefix tree walked children first, std::nth_element / std::partial_sort with the same
// comparison), so even ties resolve alike. The speed comes from what DeepSpeech recomputes: a prefix's words are
// KenLM indices found once per dictionary state, never strings rebuilt and looked up at every step.
//
// The C interface at the end is what deepspeech_it/decode/ctc.py loads through ctypes.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "lm/model.hh"
#include "lm/state.hh"

namespace {

const float kNegInf = -std::numeric_limits<float>::max();  // DeepSpeech's "-infinity" is the lowest finite float
const float kFloatMin = std::numeric_limits<float>::min();  // added to every probability before its logarithm
const float kLog10E = 0.4342944819f;                         // a float in DeepSpeech, divided in double
const double kOutOfVocabulary = -1000.0;
const double kStartBlankProbability = 0.999;                 // frames are skipped while the blank is this sure
const unsigned int kRootLabel = static_cast<unsigned int>(-1);
const int kMaxOrder = 16;

float log_sum_exp(float x, float y) {
  if (x <= kNegInf) return y;
  if (y <= kNegInf) return x;
  float high = std::max(x, y);
  return std::log(std::exp(x - high) + std::exp(y - high)) + high;
}

// Every word of the scorer followed by the space label, as a trie over labels: the same language as DeepSpeech's
// dictionary FST, so the same "may this label follow" answers and the same final states (right after a space).
class Dictionary {
 public:
  static const int kStart = 0;

  explicit Dictionary(const lm::base::Vocabulary& vocabulary) : vocabulary_(vocabulary) { new_state(""); }

  void add(const int32_t* labels, size_t length, const std::vector<std::string>& texts, int space) {
    int state = kStart;
    std::string text;
    for (size_t i = 0; i < length; ++i) {
      text += texts[labels[i]];
      state = step_or_add(state, labels[i], text);
    }
    final_[step_or_add(state, space, text + " ")] = 1;
  }

  void freeze() {
    first_arc_.assign(1, 0);
    for (auto& arcs : building_) {
      std::sort(arcs.begin(), arcs.end());
      for (auto& arc : arcs) {
        arc_label_.push_back(arc.first);
        arc_next_.push_back(arc.second);
      }
      first_arc_.push_back(static_cast<int>(arc_label_.size()));
      std::vector<std::pair<int, int>>().swap(arcs);
    }
    building_.clear();
  }

  int next(int state, unsigned int label) const {
    auto begin = arc_label_.begin() + first_arc_[state], end = arc_label_.begin() + first_arc_[state + 1];
    auto found = std::lower_bound(begin, end, static_cast<int>(label));
    return found != end && *found == static_cast<int>(label) ? arc_next_[found - arc_label_.begin()] : -1;
  }

  bool is_final(int state) const { return final_[state] != 0; }
  // KenLM's index of the text spelt up to STATE (0, KenLM's <unk>, when it is not in the vocabulary)
  lm::WordIndex word(int state) const { return word_[state]; }

 private:
  int step_or_add(int state, int label, const std::string& text) {
    for (auto& arc : building_[state])
      if (arc.first == label) return arc.second;
    int added = new_state(text);
    building_[state].emplace_back(label, added);
    return added;
  }

  int new_state(const std::string& text) {
    building_.emplace_back();
    final_.push_back(0);
    word_.push_back(vocabulary_.Index(text));
    return static_cast<int>(final_.size()) - 1;
  }

  const lm::base::Vocabulary& vocabulary_;
  std::vector<std::vector<std::pair<int, int>>> building_;
  std::vector<int> first_arc_, arc_label_, arc_next_;
  std::vector<uint8_t> final_;
  std::vector<lm::WordIndex> word_;
};

struct Model {
  std::unique_ptr<lm::base::Model> lm;
  std::unique_ptr<Dictionary> dictionary;
  std::vector<std::string> label_texts;
  int space = 0;
  int order = 0;
};

// A node of the prefix tree: one distinct label sequence, with the log probabilities of its paths ending in a
// blank (b) or in its last label (nb), for the previous frame and the one being computed.
struct Prefix {
  unsigned int label = kRootLabel;
  Prefix* parent = nullptr;
  std::vector<std::pair<unsigned int, Prefix*>> children;
  bool exists = true;
  float b_prev = kNegInf, nb_prev = kNegInf, b_cur = kNegInf, nb_cur = kNegInf, score = kNegInf;
  float final_score = kNegInf;
  int dictionary_state = Dictionary::kStart;
  Prefix* boundary = nullptr;     // the nearest space (or the root) at or above this node
  lm::WordIndex closed_word = 0;  // a space node: the word its space closed
  int timesteps = 0;              // where each label of the best path was emitted (a node of Search::history_)
  int pending_timesteps = -1;     // this frame's better path: parent's timesteps, plus pending_frame
  int pending_frame = 0;

  ~Prefix() {
    for (auto& child : children) delete child.second;
  }
};

bool better(const Prefix* x, const Prefix* y) {
  return x->score == y->score ? x->label < y->label : x->score > y->score;
}

bool better_final(const Prefix* x, const Prefix* y) {
  return x->final_score == y->final_score ? x->label < y->label : x->final_score > y->final_score;
}

class Search {
 public:
  Search(const Model& model, size_t beam_width, size_t cutoff_top_n, float alpha, float beta)
      : model_(model), beam_width_(beam_width), cutoff_top_n_(cutoff_top_n), alpha_(alpha), beta_(beta) {
    root_.score = root_.b_prev = 0.0f;
    root_.boundary = &root_;
    history_.emplace_back(0, -1);
    prefixes_.push_back(&root_);
  }

  void next(const float* probabilities, size_t frames, size_t classes) {
    std::vector<double> row(classes);
    for (size_t t = 0; t < frames; ++t, ++frame_) {
      for (size_t c = 0; c < classes; ++c) row[c] = probabilities[t * classes + c];
      step(row.data(), classes);
    }
  }

  // The best prefix: its labels, the frame each was emitted at, and its score. Returns the number of labels.
  size_t best(int32_t* labels, int32_t* frames, float* score) {
    std::vector<Prefix*> candidates = prefixes_;
    for (size_t i = 0; i < candidates.size(); ++i) {
      Prefix* prefix = candidates[i];
      prefix->final_score = prefix->score;
      if (i < beam_width_ && prefix->parent != nullptr && prefix->label != static_cast<unsigned int>(model_.space)) {
        float word = static_cast<float>(log_cond_prob(prefix) * alpha_);
        word += beta_;
        prefix->final_score += word;
      }
    }
    std::partial_sort(candidates.begin(), candidates.begin() + 1, candidates.end(), better_final);
    Prefix* winner = candidates.front();
    std::vector<int32_t> path, times;
    for (Prefix* node = winner; node->parent != nullptr; node = node->parent) path.push_back(node->label);
    for (int node = winner->timesteps; node > 0; node = history_[node].second) times.push_back(history_[node].first);
    std::copy(path.rbegin(), path.rend(), labels);
    std::copy(times.rbegin(), times.rend(), frames);
    *score = winner->final_score;
    return path.size();
  }

 private:
  void step(const double* probability, size_t classes) {
    const size_t blank = classes - 1;
    if (probability[blank] < kStartBlankProbability) expanding_ = true;
    if (!expanding_) return;

    size_t kept = std::min(prefixes_.size(), beam_width_);
    std::partial_sort(prefixes_.begin(), prefixes_.begin() + kept, prefixes_.end(), better);
    float min_cutoff = prefixes_[kept - 1]->score + std::log(probability[blank]) - std::max(0.0, beta_);
    bool full_beam = kept == beam_width_;

    for (const auto& candidate : pruned_log_probabilities(probability, classes)) {
      const unsigned int c = static_cast<unsigned int>(candidate.first);
      const float log_prob_c = candidate.second;
      for (size_t i = 0; i < prefixes_.size() && i < beam_width_; ++i) {
        Prefix* prefix = prefixes_[i];
        if (full_beam && log_prob_c + prefix->score < min_cutoff) break;
        if (prefix->score == kNegInf) continue;
        if (c == blank) {
          float log_p = log_prob_c + prefix->score;
          if (prefix->nb_cur < log_p) prefix->pending_timesteps = -1;
          prefix->b_cur = log_sum_exp(prefix->b_cur, log_p);
          continue;
        }
        if (c == prefix->label) {
          float log_p = log_prob_c + prefix->nb_prev;
          if (prefix->nb_cur < log_p) prefix->pending_timesteps = -1;
          prefix->nb_cur = log_sum_exp(prefix->nb_cur, log_p);
        }
        Prefix* extended = extend(prefix, c);
        if (extended == nullptr) continue;
        float log_p = kNegInf;
        if (c == prefix->label && prefix->b_prev > kNegInf) {
          log_p = log_prob_c + prefix->b_prev;
        } else if (c != prefix->label) {
          log_p = log_prob_c + prefix->score;
        }
        if (c == static_cast<unsigned int>(model_.space)) {
          float word = static_cast<float>(log_cond_prob(prefix) * alpha_);
          log_p += word;
          log_p += beta_;
        }
        if (extended->nb_cur < log_p) {
          extended->pending_timesteps = prefix->timesteps;
          extended->pending_frame = static_cast<int>(frame_);
        }
        extended->nb_cur = log_sum_exp(extended->nb_cur, log_p);
      }
    }

    prefixes_.clear();
    collect(&root_);
    if (prefixes_.size() > beam_width_) {
      std::nth_element(prefixes_.begin(), prefixes_.begin() + beam_width_, prefixes_.end(), better);
      for (size_t i = beam_width_; i < prefixes_.size(); ++i) remove(prefixes_[i]);
      prefixes_.resize(beam_width_);
    }
  }

  std::vector<std::pair<size_t, float>> pruned_log_probabilities(const double* probability, size_t classes) const {
    std::vector<std::pair<size_t, double>> ranked;
    for (size_t c = 0; c < classes; ++c) ranked.emplace_back(c, probability[c]);
    if (cutoff_top_n_ < classes) {
      std::sort(ranked.begin(), ranked.end(),
                [](const std::pair<size_t, double>& a, const std::pair<size_t, double>& b) {
                  return a.second > b.second;
                });
      ranked.resize(cutoff_top_n_);
    }
    std::vector<std::pair<size_t, float>> out;
    for (const auto& entry : ranked) out.emplace_back(entry.first, std::log(entry.second + kFloatMin));
    return out;
  }

  // The child of PREFIX for label C, created when the dictionary allows it; nullptr when it does not.
  Prefix* extend(Prefix* prefix, unsigned int c) {
    for (auto& child : prefix->children) {
      if (child.first != c) continue;
      Prefix* found = child.second;
      if (!found->exists) {
        found->exists = true;
        found->b_prev = found->nb_prev = found->b_cur = found->nb_cur = kNegInf;
      }
      return found;
    }
    const Dictionary& dictionary = *model_.dictionary;
    int next = dictionary.next(prefix->dictionary_state, c);
    if (next < 0) {
      if (dictionary.is_final(prefix->dictionary_state)) prefix->dictionary_state = Dictionary::kStart;
      return nullptr;
    }
    Prefix* added = new Prefix;
    added->label = c;
    added->parent = prefix;
    added->dictionary_state = dictionary.is_final(next) ? static_cast<int>(Dictionary::kStart) : next;
    if (c == static_cast<unsigned int>(model_.space)) {
      added->boundary = added;
      added->closed_word = dictionary.word(prefix->dictionary_state);
    } else {
      added->boundary = prefix->boundary;
    }
    prefix->children.emplace_back(c, added);
    return added;
  }

  // ln P(last word of PREFIX | the words before it), PREFIX ending inside or at the end of a word.
  double log_cond_prob(const Prefix* prefix) const {
    lm::WordIndex words[kMaxOrder];
    int count = 0;
    words[count++] = model_.dictionary->word(prefix->dictionary_state);
    for (const Prefix* space = prefix->boundary; count < model_.order && space->parent != nullptr;
         space = space->parent->boundary) {
      words[count++] = space->closed_word;
    }
    for (int i = 0; i < count; ++i)
      if (words[i] == 0) return kOutOfVocabulary;
    lm::ngram::State states[2];
    lm::ngram::State *in = &states[0], *out = &states[1];
    if (count < model_.order) {
      model_.lm->BeginSentenceWrite(in);
    } else {
      model_.lm->NullContextWrite(in);
    }
    double log10_prob = 0.0;
    for (int i = count - 1; i >= 0; --i) {
      log10_prob = model_.lm->BaseScore(in, words[i], out);
      std::swap(in, out);
    }
    return log10_prob / kLog10E;
  }

  void collect(Prefix* node) {
    for (auto& child : node->children) collect(child.second);
    if (!node->exists) return;
    node->b_prev = node->b_cur;
    node->nb_prev = node->nb_cur;
    node->b_cur = node->nb_cur = kNegInf;
    node->score = log_sum_exp(node->b_prev, node->nb_prev);
    if (node->pending_timesteps >= 0) {
      history_.emplace_back(node->pending_frame, node->pending_timesteps);
      node->timesteps = static_cast<int>(history_.size()) - 1;
    }
    node->pending_timesteps = -1;
    prefixes_.push_back(node);
  }

  void remove(Prefix* node) {
    node->exists = false;
    if (!node->children.empty() || node->parent == nullptr) return;
    Prefix* parent = node->parent;
    for (auto child = parent->children.begin(); child != parent->children.end(); ++child) {
      if (child->first == node->label) {
        parent->children.erase(child);
        break;
      }
    }
    delete node;
    if (parent->children.empty() && !parent->exists) remove(parent);
  }

  const Model& model_;
  const size_t beam_width_, cutoff_top_n_;
  const double alpha_, beta_;
  Prefix root_;
  std::vector<Prefix*> prefixes_;
  std::vector<std::pair<int, int>> history_;  // (frame, earlier node): the timestep tree, node 0 the empty path
  size_t frame_ = 0;
  bool expanding_ = false;
};

void write_error(char* buffer, size_t size, const std::string& message) {
  if (buffer != nullptr && size > 0) std::snprintf(buffer, size, "%s", message.c_str());
}

}  // namespace

extern "C" {

// LM_PATH: a KenLM model (a DeepSpeech scorer file works: KenLM reads its own part). LABELS: the alphabet's
// N_LABELS texts in label order. WORDS: the dictionary, word i being labels WORD_LABELS[WORD_ENDS[i-1]..WORD_ENDS[i]).
// Returns nullptr and a message in ERROR when the model cannot be loaded.
void* ctc_decoder_new(const char* lm_path, const char* const* labels, int n_labels, int space,
                      const int32_t* word_labels, const int64_t* word_ends, int64_t n_words,
                      char* error, size_t error_size) {
  try {
    std::unique_ptr<Model> model(new Model);
    lm::ngram::Config config;
    config.load_method = util::POPULATE_OR_READ;
    config.messages = nullptr;
    model->lm.reset(lm::ngram::LoadVirtual(lm_path, config));
    model->order = static_cast<int>(model->lm->Order());
    if (model->order > kMaxOrder) throw std::runtime_error("the language model's order is above 16");
    model->space = space;
    model->label_texts.assign(labels, labels + n_labels);
    model->dictionary.reset(new Dictionary(model->lm->BaseVocabulary()));
    int64_t start = 0;
    for (int64_t i = 0; i < n_words; ++i) {
      model->dictionary->add(word_labels + start, static_cast<size_t>(word_ends[i] - start), model->label_texts,
                             space);
      start = word_ends[i];
    }
    model->dictionary->freeze();
    return model.release();
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return nullptr;
  }
}

// PROBABILITIES: N_FRAMES rows of N_CLASSES softmax outputs, the blank last. Writes the best transcript's labels
// and the frame each was emitted at (room for N_FRAMES of each is enough), and its score; returns their number,
// or -1 with a message in ERROR.
int64_t ctc_decoder_decode(const void* decoder, const float* probabilities, int64_t n_frames, int64_t n_classes,
                           int64_t beam_width, int64_t cutoff_top_n, float alpha, float beta,
                           int32_t* labels, int32_t* frames, float* score, char* error, size_t error_size) {
  try {
    const Model& model = *static_cast<const Model*>(decoder);
    if (n_classes != static_cast<int64_t>(model.label_texts.size()) + 1 || beam_width < 1 || cutoff_top_n < 1)
      throw std::invalid_argument("the probabilities do not fit the alphabet, or the beam is empty");
    Search search(model, static_cast<size_t>(beam_width), static_cast<size_t>(cutoff_top_n), alpha, beta);
    search.next(probabilities, static_cast<size_t>(n_frames), static_cast<size_t>(n_classes));
    return static_cast<int64_t>(search.best(labels, frames, score));
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return -1;
  }
}

void ctc_decoder_free(void* decoder) { delete static_cast<Model*>(decoder); }

}  // extern "C"
